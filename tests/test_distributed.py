"""Data-parallel training on the CPU (gloo): two processes started by torchrun give the model
one process gives with the same global batch; only the main process writes files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_tiny_bert


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory):
    from transformers import AutoConfig

    d = make_tiny_bert(tmp_path_factory.mktemp("tiny-nodrop-dist"), 0.2)
    cfg = AutoConfig.from_pretrained(d)
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    cfg.save_pretrained(d)
    return d


def _train(model, data, out, *extra):
    cmd = [
        sys.executable,
        "-m",
        "tunelab",
        "train",
        "--model",
        str(model),
        "--train",
        str(data["train"]),
        "--validation",
        str(data["validation"]),
        "--test",
        str(data["test"]),
        "--epochs",
        "2",
        "--learning-rate",
        "3e-3",
        "--max-length",
        "32",
        "--output-dir",
        str(out),
        "--no-progress",
        "--report-to",
        "none",
        *extra,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_two_processes_equal_one_with_the_same_global_batch(no_dropout_bert, toy_data, tmp_path):
    from safetensors.numpy import load_file

    one, two = tmp_path / "one" / "run", tmp_path / "two" / "run"
    _train(no_dropout_bert, toy_data, one, "--batch-size", "16")
    r = _train(no_dropout_bert, toy_data, two, "--batch-size", "8", "--num-processes", "2")
    assert "starting 2 processes" in r.stderr
    assert r.stdout.count("run folder:") == 1  # only the main process reports
    # the loss of every logged step agrees; the weights agree up to float noise, which Adam's
    # early ~lr*sign(g) steps amplify on near-zero gradients (mean diff ~2e-5 here against a
    # mean change from the pretrained weights of ~5e-3; in-process accumulation shows the same)
    losses = [
        [json.loads(x)["loss"] for x in (r / "train_log.jsonl").open() if '"train"' in x]
        for r in (one, two)
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5) and len(losses[0]) == 2
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert np.mean([float(np.abs(a[k] - b[k]).mean()) for k in a]) < 1e-4
    ma = json.loads((one / "metrics.json").read_text())
    mb = json.loads((two / "metrics.json").read_text())
    for split in ("validation", "test"):  # evaluation split across processes and gathered
        assert mb[split]["n"] == ma[split]["n"] == 32
        assert mb[split]["accuracy"] == pytest.approx(ma[split]["accuracy"], abs=1 / 32)
    assert mb["training"]["steps"] == ma["training"]["steps"] == 12
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["run"]  # nothing else written
    import yaml

    assert yaml.safe_load((two / "config.yaml").read_text())["num_processes"] == 2


def test_bf16_two_processes_equal_one(no_dropout_bert, toy_data, tmp_path):
    """bf16 compute over fp32 weights (functional_call through the DDP wrapper) gives two
    processes the losses of one, up to bf16 rounding."""
    losses = []
    for name, extra in (("one", ["16"]), ("two", ["8", "--num-processes", "2"])):
        out = tmp_path / name
        _train(no_dropout_bert, toy_data, out, "--precision", "bf16", "--batch-size", *extra)
        assert json.loads((out / "tunelab.json").read_text())["precision"] == "bf16"
        log = (out / "train_log.jsonl").open()
        losses.append([json.loads(x)["loss"] for x in log if '"train"' in x])
    assert losses[0] == pytest.approx(losses[1], rel=5e-3) and len(losses[0]) == 2


def test_accelerate_launch_runs_two_processes(no_dropout_bert, toy_data, tmp_path):
    """`accelerate launch --multi_gpu` (no GPU needed) starts 2 processes on gloo: half the
    optimizer steps of one process, the run recorded as 2 processes."""
    import yaml

    out = tmp_path / "run"
    cmd = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "tunelab",
        "train",
        "--model",
        str(no_dropout_bert),
        "--train",
        str(toy_data["train"]),
        "--validation",
        str(toy_data["validation"]),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-length",
        "32",
        "--output-dir",
        str(out),
        "--no-progress",
        "--report-to",
        "none",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert yaml.safe_load((out / "config.yaml").read_text())["num_processes"] == 2
    assert json.loads((out / "metrics.json").read_text())["training"]["steps"] == 6
