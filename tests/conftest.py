"""Shared fixtures: a tiny BERT built inside the tests (no downloads) and toy data files."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the suite sees a CPU without native bf16, so `--precision auto` is fp32 and every parity test
# (resume, merge, export) holds on every machine; tests of bf16 inject the flags they need
os.environ.setdefault("TUNELAB_CPU_FLAGS", "avx2")

REPO = Path(__file__).resolve().parents[1]
POS = ["good", "great", "excellent", "love", "wonderful", "superb", "happy", "fine"]
NEG = ["bad", "awful", "terrible", "hate", "poor", "boring", "sad", "broken"]
FILLER = ["the", "movie", "phone", "was", "is", "really", "very", "a", "this", "it", "and"]


def tiny_bert_config(vocab_size: int, **overrides):
    """The tiny BERT's shape (2 layers, 32 hidden, 2 heads, 64 intermediate) plus
    ``overrides`` (dropout, labels, positions, init)."""
    from transformers import BertConfig

    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return BertConfig(vocab_size=vocab_size, **{**shape, **overrides})


def tiny_decoder_config(vocab_size: int, kind: str = "llama", **overrides):
    """The tiny decoder's shape (2 layers, 32 hidden, 2 heads, 64 intermediate) as a Llama or a
    Gemma3 text config, plus ``overrides`` (layers, heads, labels, tied embeddings, token ids)."""
    from transformers import Gemma3TextConfig, LlamaConfig

    shape = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    cls = Gemma3TextConfig if kind == "gemma3" else LlamaConfig
    return cls(vocab_size=vocab_size, **{**shape, **overrides})


def method_run_config(model_dir: Path, data: dict[str, Path], out: Path, method: str, **overrides):
    """The built config of a quick run of ``method`` on the tiny model (the method matrix's
    settings, with ``overrides``)."""
    from tunelab import config as C

    return C.build(
        {
            "model": str(model_dir),
            "train": str(data["train"]),
            "validation": str(data["validation"]),
            "batch_size": 16,
            "max_length": 32,
            "output_dir": str(out),
            "progress": False,
            "method": method,
            "num_virtual_tokens": 4,
            "adapter_size": 8,
            **overrides,
        }
    )


def make_tiny_bert(d: Path, initializer_range: float = 0.02) -> Path:
    """A 2-layer, 32-hidden BERT encoder plus a WordPiece tokenizer, saved like a hub folder."""
    import torch
    from transformers import BertModel, BertTokenizer

    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *POS,
        *NEG,
        *FILLER,
        *"abcdefghijklmnopqrstuvwxyz",
        *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
    ]
    # transformers 5: the tokenizer takes the vocabulary itself (a file path is not read)
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = tiny_bert_config(
        len(vocab), max_position_embeddings=64, initializer_range=initializer_range
    )
    BertModel(cfg).save_pretrained(d)
    return d


def make_tiny_llama(d: Path, **config) -> Path:
    """A 2-layer, 32-hidden Llama with a word-level tokenizer and a chat template; ``config``
    adds LlamaConfig settings (biases, tied embeddings)."""
    import torch
    from transformers import LlamaForCausalLM

    from test_generation import _tokenizer

    tok = _tokenizer(chat=True)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = tiny_decoder_config(
        len(tok),
        max_position_embeddings=64,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **config,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


@pytest.fixture(params=["native", "pytorch"])
def kernel_path(request, monkeypatch) -> str:
    """A test once with tunelab's C kernels (built by ``make install``; a missing compiler
    fails here, not silently) and once with them turned off (``TUNELAB_NATIVE=0``). A module
    runs all its tests both ways with ``pytestmark = pytest.mark.usefixtures("kernel_path")``."""
    from tunelab import native

    if request.param == "native":
        assert native.library() is not None, "tunelab's C kernels did not build"
    else:
        monkeypatch.setenv(native.ENV, "0")
    return request.param


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
    return {
        "train": write_csv(d / "train.csv", toy_rows(96, 1)),
        "validation": write_csv(d / "validation.csv", toy_rows(32, 2)),
        "test": write_csv(d / "test.csv", toy_rows(32, 3)),
    }


def train_args(model_dir: Path, data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """CLI arguments for a quick training run on the tiny model."""
    return [
        "train",
        "--task",
        "text-classification",
        "--model",
        str(model_dir),
        "--train",
        str(data["train"]),
        "--validation",
        str(data["validation"]),
        "--test",
        str(data["test"]),
        "--epochs",
        "10",
        "--batch-size",
        "16",
        "--learning-rate",
        "3e-3",
        "--max-length",
        "32",
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="session")
def trained_runs(tiny_model_dir, toy_data, tmp_path_factory) -> dict[str, Path]:
    """One finished run per method on the tiny model, shared by the read-only tests."""
    from tunelab.cli import main

    out = {}
    for method in ("full", "lora"):
        d = tmp_path_factory.mktemp(f"run-{method}") / "run"
        lr = "3e-3" if method == "full" else "1e-2"
        assert (
            main(train_args(tiny_model_dir, toy_data, d, "--method", method, "--learning-rate", lr))
            == 0
        )
        out[method] = d
    return out


# --- tiny registered models for the task functions and the router ---------------------
def _train(args: list[str]) -> None:
    from tunelab.cli import main

    train = args[args.index("--train") + 1]  # plumbing tests: validate on the training file
    assert (
        main(
            [
                "train",
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--learning-rate",
                "3e-3",
                "--no-progress",
                "--report-to",
                "none",
                "--validation",
                train,
                *args,
            ]
        )
        == 0
    )


@pytest.fixture(scope="session")
def runs(trained_runs, tiny_model_dir, tmp_path_factory):
    """One tiny run per task (a couple of epochs: the tests check types and plumbing)."""
    import json

    from test_generation import _rows as gen_rows
    from test_question_answering import _row as qa_row
    from test_token_classification import _sentence

    d = tmp_path_factory.mktemp("fn")
    rows = toy_rows(64, 5)
    for r in rows:
        r["rating"] = 1.0 if r["label"] == "positive" else -1.0
    ratings = write_csv(d / "ratings.csv", rows, ("text", "label", "rating"))
    _train(
        [
            "--task",
            "regression",
            "--model",
            str(tiny_model_dir),
            "--train",
            str(ratings),
            "--label-column",
            "rating",
            "--output-dir",
            str(d / "score"),
        ]
    )
    rng = random.Random(0)
    ner = d / "ner.jsonl"
    ner.write_text(
        "".join(
            json.dumps(dict(zip(("tokens", "tags"), _sentence(rng, "BIO"), strict=True))) + "\n"
            for _ in range(64)
        )
    )
    _train(
        [
            "--task",
            "token-classification",
            "--model",
            str(tiny_model_dir),
            "--train",
            str(ner),
            "--output-dir",
            str(d / "ner"),
        ]
    )
    qa = d / "qa.jsonl"
    qa.write_text("".join(json.dumps(qa_row(rng, i)) + "\n" for i in range(48)))
    _train(
        [
            "--task",
            "question-answering",
            "--model",
            str(tiny_model_dir),
            "--train",
            str(qa),
            "--max-length",
            "32",
            "--doc-stride",
            "8",
            "--output-dir",
            str(d / "qa"),
        ]
    )
    lm = make_tiny_llama(d / "tiny-llama")
    pairs = d / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in gen_rows(32, 1)))
    _train(
        [
            "--task",
            "generation",
            "--model",
            str(lm),
            "--train",
            str(pairs),
            "--max-new-tokens",
            "4",
            "--output-dir",
            str(d / "gen"),
        ]
    )
    return {
        "classify": trained_runs["full"],
        "score": d / "score",
        "ner": d / "ner",
        "qa": d / "qa",
        "gen": d / "gen",
    }


@pytest.fixture()
def registry(runs, music_runs, tmp_path, monkeypatch):
    """Every task function registered to its tiny run, in a models.yaml of this test
    (compose_music to the tiny VAE, writing its files under this test's folder)."""
    from tunelab.cli import main

    f = tmp_path / "models.yaml"
    monkeypatch.setenv("TUNELAB_MODELS", str(f))
    monkeypatch.setenv("TUNELAB_MUSIC_DIR", str(tmp_path / "compositions"))
    for name, run in (
        ("analyze_sentiment", runs["classify"]),
        ("classify", runs["classify"]),
        ("tickets", runs["classify"]),
        ("score", runs["score"]),
        ("extract_entities", runs["ner"]),
        ("answer", runs["qa"]),
        ("generate", runs["gen"]),
        ("compose_music", music_runs["vae"]),
    ):
        assert main(["register", name, str(run)]) == 0
    return f


# --- the real MiniLM on a slice of the bundled reviews: one full run shared by the session ---
DATA_EN = REPO / "data" / "en_sentiment"


def subset_csv(src: Path, dst: Path, n: int, fields=("text", "label")) -> Path:
    """The first ``n`` rows of ``src`` with only ``fields``, written to ``dst``."""
    with open(src, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:n]
    return write_csv(dst, [{k: r[k] for k in fields} for r in rows], fields)


@pytest.fixture(scope="session")
def small_real(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("en")
    return {
        "train": subset_csv(DATA_EN / "train.csv", d / "train.csv", 1200),
        "validation": subset_csv(DATA_EN / "validation.csv", d / "validation.csv", 300),
        "test": subset_csv(DATA_EN / "test.csv", d / "test.csv", 300),
    }


def train_minilm(method: str, data: dict[str, Path], out: Path) -> dict:
    exe = Path(sys.executable).parent / "tunelab"
    cmd = [
        str(exe),
        "train",
        "--task",
        "text-classification",
        "--model",
        "minilm-l6",
        "--train",
        str(data["train"]),
        "--validation",
        str(data["validation"]),
        "--test",
        str(data["test"]),
        "--method",
        method,
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--max-length",
        "64",
        "--output-dir",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout.splitlines()[0])


@pytest.fixture(scope="session")
def minilm_sentiment(small_real, tmp_path_factory) -> tuple[Path, dict]:
    """The real MiniLM fine-tuned (full, 2 epochs) on 1,200 bundled reviews: (run, summary).
    Built once; the real-model tests and the monitor's scenario tests read it."""
    out = tmp_path_factory.mktemp("minilm-sentiment") / "full"
    return out, train_minilm("full", small_real, out)


# --- a real PostgreSQL server for the database tests (Debian's postgresql, started here) ---
PG_BIN = Path("/usr/lib/postgresql")


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A throw-away PostgreSQL 15 cluster on a free loopback port (initdb + pg_ctl, run as the
    postgres user when the tests run as root); its SQLAlchemy URL. `make test` installs the
    server (scripts/install_system.sh)."""
    import shutil
    import socket
    import tempfile

    bins = sorted(PG_BIN.glob("*/bin/pg_ctl"))
    assert bins, "PostgreSQL is not installed: run `bash scripts/install_system.sh`"
    bin_dir = bins[-1].parent
    root = Path(tempfile.mkdtemp(prefix="tunelab-pg-"))
    root.chmod(0o777)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = root / "data"
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *as_postgres,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            opts,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


# --- the assistant: a knowledge base on the real Python FAQ (make data-faq) and MiniLM ---
@pytest.fixture(scope="session")
def python_faq_kb(tmp_path_factory) -> Path:
    """A KB of the Python FAQ, calibrated on the dev half of the hand-written evaluation set.
    Built once; the assistant's CLI, HTTP and browser tests read it (and never write to it)."""
    from tunelab.assistant import kb as kbmod
    from tunelab.assistant.sources import read_faq

    faq = REPO / "data" / "faq" / "python_faq.jsonl"
    assert faq.is_file(), "run `make data-faq` (make test does)"
    rows = [
        json.loads(line)
        for line in (REPO / "data" / "assistant" / "python_faq_eval.jsonl").read_text().splitlines()
    ]
    out = tmp_path_factory.mktemp("kb") / "python-faq"
    entries = read_faq(faq)
    kbmod.build(
        entries,
        out,
        "minilm-l6",
        [kbmod.file_record(faq, "faq", len(entries))],
        validation=[(r["question"], r["faq_id"]) for r in rows if r["split"] == "dev"],
        validation_source="dev",
        log=lambda m: None,
    )
    return out


# --- music: real Essen folk tunes (inside music21), tiny models trained once per session ---
@pytest.fixture(scope="session")
def essen_data(tmp_path_factory) -> Path:
    """240 real Essen tunes parsed and split by piece (`tunelab music prepare`)."""
    from tunelab.cli import main

    out = tmp_path_factory.mktemp("music") / "essen"
    args = ["music", "prepare", "--source", "essen", "--max-pieces", "240", "--output-dir"]
    assert main([*args, str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def music_runs(essen_data, tmp_path_factory) -> dict[str, Path]:
    """A small VAE (3 epochs: it writes notes, so interpolating and composing have something to
    render) and a tiny GAN trained by `tunelab music train` on the Essen subset; the plumbing
    tests read them, the measured models are trained in bench/music.py."""
    from tunelab.cli import main

    d = tmp_path_factory.mktemp("music-runs")
    out = {}
    for kind, size, epochs in (("vae", "small", "3"), ("gan", "tiny", "2")):
        out[kind] = d / kind
        args = ["music", "train", "--data", str(essen_data), "--model", kind, "--size", size]
        args += ["--epochs", epochs, "--eval-samples", "60", "--output-dir", str(out[kind])]
        assert main(args) == 0
    return out
