"""Integration: the real offline MiniLM on the bundled real data, through the console script.

Slow (about a minute each on 2 cores) but run by `make test`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tunelab
from conftest import subset_csv as _subset
from conftest import train_minilm as _train

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "en_sentiment"
TEXTS = ["A gorgeous, moving and funny film.", "A boring, tedious mess of a movie."]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "method,min_acc", [("full", 0.75), ("lora", 0.75), ("ia3", 0.75), ("adapter", 0.75)]
)
def test_real_minilm_learns_and_reloads(method, min_acc, small_real, minilm_sentiment, tmp_path):
    if method == "full":  # the session's run, which the monitor tests read too
        out, summary = minilm_sentiment
    else:
        out = tmp_path / method
        summary = _train(method, small_real, out)
    assert summary["test"]["accuracy"] >= min_acc, summary
    m = tunelab.load(out)
    preds = m.predict(TEXTS)
    assert [p["label"] for p in preds] == ["positive", "negative"]
    # reload == stored metrics (the LoRA head came back trained)
    assert m.evaluate(str(small_real["test"]))["accuracy"] == pytest.approx(
        summary["test"]["accuracy"]
    )
    np.testing.assert_array_equal(m.logits(TEXTS), tunelab.load(out).logits(TEXTS))
    if method == "lora":  # the merged export, read by plain Transformers, predicts the same
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from tunelab.export import export_merged

        merged = export_merged(out, tmp_path / "merged")
        plain = AutoModelForSequenceClassification.from_pretrained(str(merged)).eval()
        tok = AutoTokenizer.from_pretrained(str(merged))
        with torch.no_grad():
            logits = plain(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
        np.testing.assert_allclose(logits, m.logits(TEXTS), atol=1e-4)
    if method == "full":  # the real graph gets ONNX Runtime's fusions; int8 keeps accuracy
        from tunelab.export import export_model

        rec = export_model(
            out,
            tmp_path / "int8",
            "onnx",
            quantize="int8",
            eval_data=str(small_real["test"]),
            log=lambda *_: None,
        )
        assert "Attention" in rec["fusions"], rec
        assert rec["parity_fp32"]["max_abs_logit_diff"] < 1e-3, rec
        assert abs(rec["metrics_after"]["accuracy"] - rec["metrics_before"]["accuracy"]) <= 0.02, (
            rec
        )
        assert [p["label"] for p in tunelab.load(tmp_path / "int8").predict(TEXTS)] == [
            "positive",
            "negative",
        ]


def test_real_minilm_regression_beats_mean_baseline(tmp_path):
    """Mean human rating of real review sentences: well under the training-mean baseline."""
    d = tmp_path / "r"
    d.mkdir()
    src = REPO / "data" / "en_ratings"
    files = {}
    for split, n in (("train", 1200), ("validation", 300), ("test", 300)):
        files[split] = _subset(src / f"{split}.csv", d / f"{split}.csv", n, ("text", "rating"))
    exe = Path(sys.executable).parent / "tunelab"
    out = tmp_path / "run"
    r = subprocess.run(
        [
            str(exe),
            "train",
            "--task",
            "regression",
            "--model",
            "minilm-l6",
            "--train",
            str(files["train"]),
            "--validation",
            str(files["validation"]),
            "--test",
            str(files["test"]),
            "--label-column",
            "rating",
            "--epochs",
            "2",
            "--max-length",
            "64",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    test = json.loads(r.stdout.splitlines()[0])["test"]
    assert test["mae"] < 0.75 * test["baseline_mae"] and test["pearson"] > 0.5, test
    v = tunelab.load(out).predict(TEXTS)
    assert v[0]["value"] > 0 > v[1]["value"]


def test_smollm2_alias_converts_once_and_classifies(tmp_path_factory, small_real, monkeypatch):
    """The GGUF alias: converted once into the cache, reused after, trains with LoRA."""
    import os

    cache = tmp_path_factory.mktemp("tunelab-cache")
    monkeypatch.setenv("TUNELAB_CACHE", str(cache))
    from tunelab.models import resolve_model

    path = Path(resolve_model("smollm2-135m").path)
    assert path.parent.parent == cache and (path / "model.safetensors").is_file()
    stamp = os.stat(path / "model.safetensors").st_mtime_ns
    assert resolve_model("smollm2-135m").path == str(path)  # cached: no second conversion
    assert os.stat(path / "model.safetensors").st_mtime_ns == stamp

    train = _subset(small_real["train"], tmp_path_factory.mktemp("s") / "t.csv", 96)
    val = _subset(small_real["validation"], tmp_path_factory.mktemp("s") / "v.csv", 48)
    exe = Path(sys.executable).parent / "tunelab"
    out = tmp_path_factory.mktemp("smol") / "run"
    r = subprocess.run(
        [
            str(exe),
            "train",
            "--model",
            "smollm2-135m",
            "--train",
            str(train),
            "--validation",
            str(val),
            "--method",
            "lora",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--max-length",
            "48",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TUNELAB_CACHE": str(cache)},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "converting" not in r.stderr  # the cached folder was used
    info = json.loads((out / "tunelab.json").read_text())
    assert info["base_model"]["source"] == "smollm2-135m" and info["method"] == "lora"
    monkeypatch.setenv("TUNELAB_CACHE", str(cache))
    p = tunelab.load(out).predict(TEXTS)
    assert all(set(x) == {"label", "score", "probabilities"} for x in p)
