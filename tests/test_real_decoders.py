"""Integration: the real decoder models (Gemma 3 270M, SmolLM2 135M) on Chinese and English.

Slow: the Gemma GGUF is assembled and converted once per session into a temporary cache (about
1.5 minutes, 1.1 GB), then every test reuses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tunelab
from test_real_model import _subset

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
EXE = Path(sys.executable).parent / "tunelab"

# Hand-tagged Chinese sentences (BMES, as MSRA): people and places
NER_ROWS = [
    ("李明昨天去了北京。", "B-PER E-PER O O O O B-LOC E-LOC O"),
    ("王芳住在上海。", "B-PER E-PER O O B-LOC E-LOC O"),
    ("张伟和李娜在广州见面。", "B-PER E-PER O B-PER E-PER O B-LOC E-LOC O O O"),
    ("刘洋来自南京。", "B-PER E-PER O O B-LOC E-LOC O"),
    ("陈静今天飞往深圳。", "B-PER E-PER O O O O B-LOC E-LOC O"),
    ("赵磊在杭州工作。", "B-PER E-PER O B-LOC E-LOC O O O"),
    ("周杰到了成都。", "B-PER E-PER O O B-LOC E-LOC O"),
    ("孙丽喜欢西安。", "B-PER E-PER O O B-LOC E-LOC O"),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private tunelab cache holding the converted Gemma (converted here, once)."""
    from tunelab.models import resolve_model

    d = tmp_path_factory.mktemp("tunelab-cache")
    old = os.environ.get("TUNELAB_CACHE")
    os.environ["TUNELAB_CACHE"] = str(d)
    try:
        path = Path(resolve_model("gemma3-270m").path)
        assert path.parent.parent == d and (path / "model.safetensors").is_file()
        stamp = os.stat(path / "model.safetensors").st_mtime_ns
        assert resolve_model("gemma3-270m").path == str(path)  # cached: no second conversion
        assert os.stat(path / "model.safetensors").st_mtime_ns == stamp
        assert not [p for p in d.rglob("*") if p.name.startswith(".")]  # no leftovers
        yield d
    finally:
        if old is None:
            os.environ.pop("TUNELAB_CACHE", None)
        else:
            os.environ["TUNELAB_CACHE"] = old


def _train(cache: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [str(EXE), "train", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TUNELAB_CACHE": str(cache)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "converting" not in r.stderr  # the cached folder was used
    return r


def test_gemma_token_classification_on_chinese(cache, tmp_path):
    data = tmp_path / "ner.jsonl"
    data.write_text(
        "".join(
            json.dumps({"tokens": list(s), "tags": t.split()}, ensure_ascii=False) + "\n"
            for s, t in NER_ROWS
        ),
        encoding="utf-8",
    )
    out = tmp_path / "run"
    _train(
        cache,
        "--task",
        "token-classification",
        "--model",
        "gemma3-270m",
        "--train",
        str(data),
        "--validation",
        str(data),
        "--method",
        "lora",
        "--lora-target-modules",
        "q_proj,k_proj,v_proj,o_proj",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--max-length",
        "32",
        "--output-dir",
        str(out),
    )
    info = json.loads((out / "tunelab.json").read_text())
    assert info["target"]["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    os.environ["TUNELAB_CACHE"] = str(cache)
    m = tunelab.load(out)
    texts = ["李明去了北京。", "王芳在上海工作。"]
    first, second = m.predict(texts), tunelab.load(out).predict(texts)
    assert first == second  # the LoRA adapter and the token head round-trip
    for text, p in zip(texts, first, strict=True):
        for e in p["entities"]:
            assert text[e["start"] : e["end"]] == e["text"] and e["type"] in ("PER", "LOC")


def test_gemma_classifies_chinese_reviews(cache, tmp_path):
    zh = REPO / "data" / "zh_sentiment"
    train = _subset(zh / "train.csv", tmp_path / "train.csv", 48)
    val = _subset(zh / "validation.csv", tmp_path / "val.csv", 24)
    out = tmp_path / "run"
    _train(
        cache,
        "--model",
        "gemma3-270m",
        "--train",
        str(train),
        "--validation",
        str(val),
        "--method",
        "lora",
        "--lora-target-modules",
        "q_proj,k_proj,v_proj,o_proj",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "64",
        "--output-dir",
        str(out),
    )
    os.environ["TUNELAB_CACHE"] = str(cache)
    p = tunelab.load(out).predict("质量很好，非常满意")
    assert set(p) == {"label", "score", "probabilities"} and set(p["probabilities"]) == {
        "negative",
        "positive",
    }


def test_smollm2_generation_uses_its_chat_template(tmp_path):
    """Real SmolLM2 tokenizer and chat template: a short LoRA run writes before/after scores."""
    src = REPO / "data" / "en_sentiment"
    rows = []
    for split, n in (("train", 32), ("validation", 8), ("test", 8)):
        with open(src / f"{split}.csv", encoding="utf-8") as f:
            import csv

            sample = list(csv.DictReader(f))[:n]
        p = tmp_path / f"{split}.jsonl"
        p.write_text(
            "".join(
                json.dumps(
                    {
                        "prompt": f"Is this review positive or negative?\n{r['text']}",
                        "response": r["label"],
                    }
                )
                + "\n"
                for r in sample
            )
        )
        rows.append(p)
    out = tmp_path / "run"
    r = subprocess.run(
        [
            str(EXE),
            "train",
            "--no-progress",
            "--task",
            "generation",
            "--model",
            "smollm2-135m",
            "--train",
            str(rows[0]),
            "--validation",
            str(rows[1]),
            "--test",
            str(rows[2]),
            "--method",
            "lora",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--max-length",
            "96",
            "--max-new-tokens",
            "4",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for m in (metrics["test"], metrics["before_training"]["test"]):
        assert 0.0 <= m["rouge_l"] <= 1.0 and m["perplexity"] > 1.0 and m["n"] == 8
    tok = tunelab.load(out).tokenizer
    assert tok.chat_template  # the run folder keeps the template used in training
