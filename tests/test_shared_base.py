"""Runs on one base model loaded in one process share the base's weights (one copy in
memory), and nothing one of them does reaches the others: a partial method's trained tensors,
an export's merge, a run in another precision."""

from __future__ import annotations

import pytest
import torch

import tunelab
from conftest import train_args
from tunelab.cli import main


def _base_weight(model) -> torch.Tensor:
    """The first attention query weight of the base model (never trained by LoRA/bitfit)."""
    for name, p in model.model.named_parameters():
        if name.endswith("attention.self.query.weight") or name.endswith(
            "attention.self.query.base_layer.weight"
        ):
            return p
    raise AssertionError("no query weight")


@pytest.fixture(scope="module")
def bitfit_run(tiny_model_dir, toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bitfit") / "run"
    args = train_args(tiny_model_dir, toy_data, out, "--method", "bitfit", "--epochs", "3")
    assert main(args) == 0
    return out


def test_runs_on_one_base_share_its_weights(trained_runs, bitfit_run, toy_data):
    texts = [r.split(",")[0] for r in toy_data["test"].read_text().splitlines()[1:]]
    alone = tunelab.load(trained_runs["lora"], precision="fp32").logits(texts)
    a = tunelab.load(trained_runs["lora"], precision="fp32")
    b = tunelab.load(bitfit_run, precision="fp32")
    assert _base_weight(a).data_ptr() == _base_weight(b).data_ptr()  # one copy
    # bitfit's trained biases are its own: loading it changed nothing the LoRA run sees
    assert abs(a.logits(texts) - alone).max() < 1e-5
    # a full fine-tuned run's weights are its own folder's, never shared
    full = tunelab.load(trained_runs["full"], precision="fp32")
    assert _base_weight(full).data_ptr() != _base_weight(a).data_ptr()
    # bf16 models share a bf16 copy, apart from the fp32 one
    c = tunelab.load(trained_runs["lora"], precision="bf16")
    d = tunelab.load(bitfit_run, precision="bf16")
    assert _base_weight(c).dtype == torch.bfloat16
    assert _base_weight(c).data_ptr() == _base_weight(d).data_ptr() != _base_weight(a).data_ptr()


def test_an_export_merges_into_its_own_copy(trained_runs, toy_data, tmp_path):
    texts = [r.split(",")[0] for r in toy_data["test"].read_text().splitlines()[1:]]
    loaded = tunelab.load(trained_runs["lora"], precision="fp32")
    before = loaded.logits(texts)
    out = tmp_path / "merged"
    args = ["export", "--model-dir", str(trained_runs["lora"]), "--output-dir", str(out)]
    assert main([*args, "--format", "hf"]) == 0
    # the merge added LoRA's update to the base weights it loaded: not to the shared ones
    assert abs(loaded.logits(texts) - before).max() < 1e-6
    merged = tunelab.load(out, precision="fp32").logits(texts)
    assert abs(merged - before).max() < 1e-4


def test_sharing_can_be_turned_off(trained_runs, bitfit_run, monkeypatch):
    monkeypatch.setenv("TUNELAB_SHARE_BASE", "0")
    a = tunelab.load(trained_runs["lora"], precision="fp32")
    b = tunelab.load(bitfit_run, precision="fp32")
    assert _base_weight(a).data_ptr() != _base_weight(b).data_ptr()
