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


def test_runs_with_the_same_tokenizer_files_share_one_tokenizer(
    trained_runs, bitfit_run, monkeypatch
):
    a = tunelab.load(trained_runs["lora"], precision="fp32")
    b = tunelab.load(bitfit_run, precision="fp32")
    full = tunelab.load(trained_runs["full"], precision="fp32")
    assert a.tokenizer is b.tokenizer is full.tokenizer  # the same files, the same use
    monkeypatch.setenv("TUNELAB_SHARE_BASE", "0")
    c = tunelab.load(trained_runs["lora"], precision="fp32")
    assert c.tokenizer is not a.tokenizer


def _expected(runs: dict, texts: list[str], monkeypatch) -> dict:
    """Each run's logits loaded on its own, nothing shared."""
    monkeypatch.setenv("TUNELAB_SHARE_BASE", "0")
    out = {k: tunelab.load(v, precision="fp32").logits(texts) for k, v in runs.items()}
    monkeypatch.delenv("TUNELAB_SHARE_BASE")
    return out


def test_a_model_set_runs_the_named_adapter_for_every_concurrent_request(
    trained_runs, bitfit_run, toy_data, monkeypatch
):
    """Three runs on one tiny base in one ModelSet: 64 requests from 8 threads, each for a
    random run and a random slice of texts, each answered with that run's own logits."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    texts = [r.split(",")[0] for r in toy_data["test"].read_text().splitlines()[1:]]
    runs = {"lora": trained_runs["lora"], "bitfit": bitfit_run, "full": trained_runs["full"]}
    want = _expected(runs, texts, monkeypatch)
    assert max(abs(want["lora"] - want["bitfit"]).max(), abs(want["lora"] - want["full"]).max())
    models = tunelab.load(runs, precision="fp32")
    assert sorted(models) == sorted(runs) and models["lora"].run_dir == runs["lora"]
    assert sorted(map(sorted, models.shared_groups())) == [["bitfit", "lora"], ["full"]]
    rng = random.Random(0)
    jobs = []
    for _ in range(64):
        start = rng.randrange(len(texts) - 4)
        jobs.append((rng.choice(list(runs)), start, start + rng.randrange(1, 5)))

    def ask(job):
        name, a, b = job
        return models.logits(texts[a:b], adapter=name, batch_size=2)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, jobs))
    for (name, a, b), logits in zip(jobs, got, strict=True):
        np.testing.assert_allclose(logits, want[name][a:b], atol=1e-5)
    with pytest.raises(KeyError, match="no model named 'nope'"):
        models.predict(texts[:1], adapter="nope")


def test_serving_two_adapters_on_one_base_answers_each_with_its_own(
    trained_runs, bitfit_run, toy_data, tmp_path, monkeypatch
):
    """A real `tunelab serve` with two runs on one base, hit concurrently for both."""
    from concurrent.futures import ThreadPoolExecutor

    from serving_helpers import Server

    texts = [r.split(",")[0] for r in toy_data["test"].read_text().splitlines()[1:]][:12]
    runs = {"a": trained_runs["lora"], "b": bitfit_run}
    # the server loads as tunelab.load does by default (bf16 on a CPU with native bf16)
    want = {k: tunelab.load(v).predict(texts) for k, v in runs.items()}
    gap = max(abs(x["score"] - y["score"]) for x, y in zip(want["a"], want["b"], strict=True))
    assert gap > 0.05  # the two runs answer differently: a mix-up would show
    args = ["--model", f"a={runs['a']}", "--model", f"b={runs['b']}", "--rate-limit", "0"]
    s = Server(args, tmp_path / "serve.log")
    try:
        jobs = [("a" if i % 2 else "b", i % len(texts)) for i in range(40)]

        def ask(job):
            name, i = job
            status, body, _ = s.request("POST", f"/v1/models/{name}/predict", {"inputs": texts[i]})
            assert status == 200, body
            return body["predictions"][0]

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(ask, jobs))
    finally:
        s.stop()
    for (name, i), pred in zip(jobs, got, strict=True):
        assert pred["label"] == want[name][i]["label"]
        # batched with other requests (padding) in bf16: within rounding
        assert pred["score"] == pytest.approx(want[name][i]["score"], abs=0.01)
