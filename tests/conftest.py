"""Shared fixtures: a tiny BERT built inside the tests (no downloads) and toy data files."""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
POS = ["good", "great", "excellent", "love", "wonderful", "superb", "happy", "fine"]
NEG = ["bad", "awful", "terrible", "hate", "poor", "boring", "sad", "broken"]
FILLER = ["the", "movie", "phone", "was", "is", "really", "very", "a", "this", "it", "and"]


def make_tiny_bert(d: Path, initializer_range: float = 0.02) -> Path:
    """A 2-layer, 32-hidden BERT encoder plus a WordPiece tokenizer, saved like a hub folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POS, *NEG, *FILLER,
             *"abcdefghijklmnopqrstuvwxyz", *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]]
    # transformers 5: the tokenizer takes the vocabulary itself (a file path is not read)
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                     initializer_range=initializer_range)
    BertModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def learnable_model_dir(tmp_path_factory) -> Path:
    """The tiny BERT with 10x larger random weights: at the usual 0.02 init its attention
    barely mixes tokens, so methods that keep the body frozen (adapters, BitFit) could not
    learn the toy task at all, and their tests would prove nothing."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert-learnable"), 0.2)


def toy_rows(n: int, seed: int, labels=("negative", "positive")) -> list[dict]:
    """Learnable toy sentiment: the label is given by which word list the cue words come from."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        lab = labels[i % len(labels)]
        cues = POS if lab == labels[-1] else NEG
        words = rng.sample(FILLER, 3) + rng.sample(cues, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": lab})
    return rows


def write_csv(path: Path, rows: list[dict], fieldnames=("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fieldnames))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("toy-data")
    return {"train": write_csv(d / "train.csv", toy_rows(96, 1)),
            "validation": write_csv(d / "validation.csv", toy_rows(32, 2)),
            "test": write_csv(d / "test.csv", toy_rows(32, 3))}


def train_args(model_dir: Path, data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """CLI arguments for a quick training run on the tiny model."""
    return ["train", "--task", "text-classification", "--model", str(model_dir),
            "--train", str(data["train"]), "--validation", str(data["validation"]),
            "--test", str(data["test"]), "--epochs", "10", "--batch-size", "16",
            "--learning-rate", "3e-3", "--max-length", "32", "--output-dir", str(out),
            "--no-progress", *extra]


@pytest.fixture(scope="session")
def trained_runs(tiny_model_dir, toy_data, tmp_path_factory) -> dict[str, Path]:
    """One finished run per method on the tiny model, shared by the read-only tests."""
    from tunelab.cli import main

    out = {}
    for method in ("full", "lora"):
        d = tmp_path_factory.mktemp(f"run-{method}") / "run"
        lr = "3e-3" if method == "full" else "1e-2"
        assert main(train_args(tiny_model_dir, toy_data, d, "--method", method,
                               "--learning-rate", lr)) == 0
        out[method] = d
    return out
