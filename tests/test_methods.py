"""Methods: the registry, the head trap, and save/load round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import tunelab
from tunelab.methods import METHODS, Method, register_method
from tunelab.tasks import text_classification as tc

TEXTS = ["great wonderful phone", "awful terrible film", "the movie was fine", "sad and broken"]


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_method(Method("lora", "dup", 1e-3, *[lambda *a: None] * 3))
    assert {"full", "lora"} <= set(METHODS)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_reload_gives_identical_predictions(trained_runs, method):
    """Save/load round trip: a second load predicts exactly the same probabilities."""
    a = tunelab.load(trained_runs[method]).logits(TEXTS)
    b = tunelab.load(trained_runs[method]).logits(TEXTS)
    np.testing.assert_array_equal(a, b)


def test_lora_head_is_trained_and_saved(trained_runs, tiny_model_dir):
    """The PEFT trap: a head missing from modules_to_save comes back random after reload."""
    run = trained_runs["lora"]
    m = tunelab.load(run)
    fresh = tc.build_model(str(tiny_model_dir), {"labels": m.labels})
    w = [v for k, v in m.model.named_parameters() if "classifier" in k and k.endswith("weight")]
    assert w, "classifier weights not found in the loaded LoRA model"
    assert not torch.allclose(w[0], fresh.classifier.weight)
    # the reloaded model scores exactly what the trained one scored before saving
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    stored = json.loads((run / "metrics.json").read_text())["validation"]
    assert m.evaluate(cfg["validation"])["accuracy"] == pytest.approx(stored["accuracy"])
    # learned well above chance (0.5): seeds 42, 1, 2, 3 give 0.81-0.88 on these 32 examples
    assert stored["accuracy"] >= 0.78


def test_same_seed_same_model(tiny_model_dir, toy_data, tmp_path):
    """Seeded and reproducible: two runs with one seed give the same weights' predictions."""
    from conftest import train_args
    from tunelab.cli import main

    runs = []
    for i in range(2):
        out = tmp_path / f"r{i}"
        assert main(train_args(tiny_model_dir, toy_data, out, "--epochs", "2")) == 0
        runs.append(tunelab.load(out).logits(TEXTS))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("method", ["lora", "prefix-tuning", "adapter", "ia3"])
@pytest.mark.parametrize("task", ["regression", "token-classification", "multi-label"])
def test_methods_train_and_reload_for_every_task(task, method, tiny_model_dir, tmp_path):
    """Every task also runs with the parameter-efficient methods: the head is saved and reload
    predicts identically."""
    import random

    from conftest import FILLER, NEG, POS

    rng = random.Random(0)
    rows = []
    for i in range(48):
        cue = POS if i % 2 else NEG
        words = rng.sample(FILLER, 2) + [rng.choice(cue)]
        if task == "regression":
            rows.append({"text": " ".join(words), "y": 1.0 if i % 2 else -1.0})
        elif task == "multi-label":
            rows.append({"text": " ".join(words), "y": ["pos"] if i % 2 else ["neg", "x"]})
        else:
            rows.append({"tokens": words, "tags": ["O", "O", "B-P" if i % 2 else "B-N"]})
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = [] if task == "token-classification" else ["--label-column", "y"]
    out = tmp_path / "run"
    from tunelab.cli import main

    assert (
        main(
            [
                "train",
                "--task",
                task,
                "--model",
                str(tiny_model_dir),
                "--train",
                str(f),
                "--validation",
                str(f),
                "--method",
                method,
                "--epochs",
                "2",
                "--batch-size",
                "16",
                "--max-length",
                "16",
                "--output-dir",
                str(out),
                "--no-progress",
                *extra,
            ]
        )
        == 0
    )
    assert (out / "adapter_model.safetensors").is_file() or (
        out / "trained_weights.safetensors"
    ).is_file()
    a = tunelab.load(out).predict(TEXTS)
    assert a == tunelab.load(out).predict(TEXTS)
