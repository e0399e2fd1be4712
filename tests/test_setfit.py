"""SetFit (few-shot classification by contrastive training, tunelab.methods.setfit) on the tiny
BERT: pairs balanced and distinct, the head equal to the logistic regression it was fitted as,
the contrastive stage pulling each class together, and the run folder predicting, reloading and
exporting to ONNX like any other run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from conftest import toy_rows, write_csv
from tunelab.cli import main
from tunelab.errors import DataError
from tunelab.methods import setfit
from tunelab.methods.base import TrainingData
from tunelab.models.hf import pad_id
from tunelab.tasks import TASKS
from tunelab.tasks.pooled_head import is_mean_pooled
from tunelab.training.supervised import run_stage


def test_pairs_are_balanced_distinct_and_labelled_by_class():
    rng = random.Random(3)
    labels = [rng.randrange(3) for _ in range(30)]
    ids = [[101, rng.randrange(5), 102] for _ in range(30)]  # many identical texts
    pairs, targets = setfit.make_pairs(ids, labels, per_text=6, seed=1)
    assert sum(targets) == len(targets) - sum(targets) > 0  # as many dissimilar as similar
    assert len({(min(i, j), max(i, j)) for i, j in pairs}) == len(pairs)  # each pair once
    for (i, j), t in zip(pairs, targets, strict=True):
        assert i != j and ids[i] != ids[j]  # a text is never paired with itself
        assert t == int(labels[i] == labels[j])
    again = setfit.make_pairs(ids, labels, per_text=6, seed=1)
    assert again == (pairs, targets)  # drawn from the seed


def test_pairs_need_a_class_with_two_texts_and_two_classes():
    with pytest.raises(DataError, match="two different texts"):
        setfit.make_pairs([[1, 2], [1, 3]], [0, 1], per_text=4, seed=0)
    with pytest.raises(DataError, match="two classes"):
        setfit.make_pairs([[1, 2], [1, 3]], [0, 0], per_text=4, seed=0)


def test_cosine_loss_is_zero_when_cosines_hit_the_targets():
    sims = torch.tensor([[1.0, 0.3], [0.2, 0.0]]) * 20.0
    assert setfit.cosine_loss(sims, torch.tensor([1.0, 0.0]), 20.0).item() == 0.0
    assert setfit.cosine_loss(sims, torch.tensor([0.0, 1.0]), 20.0).item() == pytest.approx(1.0)


def _encoded(model_dir: Path, n_per_class: int, seed: int):
    from transformers import AutoTokenizer

    task = TASKS["text-classification"]
    path = write_csv(Path(model_dir).parent / f"sf-{seed}.csv", toy_rows(2 * n_per_class, seed))
    ex = task.read_examples(str(path), "text", "label")
    spec = {**task.make_spec(ex, {}), **setfit.METHOD.spec}
    tok = AutoTokenizer.from_pretrained(model_dir)
    from tunelab.tasks.encoding import encode_split

    ids, y = encode_split(task, tok, ex, spec, 32, "label")
    return task, spec, tok, ids, y


def _margin(model, ids, y) -> float:
    """Mean cosine within a class minus across classes, of the mean-pooled embeddings."""
    e = setfit.embeddings(model, ids)
    sims, same = e @ e.T, np.equal.outer(y, y)
    off = ~np.eye(len(y), dtype=bool)
    return float(sims[same & off].mean() - sims[~same].mean())


def test_contrastive_stage_pulls_classes_together_and_head_is_the_regression(
    learnable_model_dir,
):
    from sklearn.linear_model import LogisticRegression

    task, spec, tok, ids, y = _encoded(learnable_model_dir, 8, seed=5)
    torch.manual_seed(0)
    model = task.build_model(str(learnable_model_dir), spec)
    assert is_mean_pooled(model)
    before = _margin(model, ids, y)
    opts = setfit.SetFitOptions(setfit_pairs=8, setfit_learning_rate=1e-3, setfit_batch_size=8)
    details = setfit.before_training(
        model, opts, TrainingData(ids, y, pad_id(tok), 8, "fp32", 0, lambda m: None, fit=run_stage)
    )
    after = _margin(model, ids, y)
    assert details["pairs"] == 2 * details["similar_pairs"] > 0
    assert after > before + 0.05, (before, after)
    # only the head trains in the loop that follows
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["classifier.weight", "classifier.bias"]
    # the head is the logistic regression on the tuned embeddings: same probabilities
    e = setfit.embeddings(model, ids)
    lr = LogisticRegression(max_iter=1000).fit(e, y)
    model.eval()
    from tunelab.data.batching import predict_logits

    logits = np.asarray(predict_logits(model, ids, pad_id(tok)))
    probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
    np.testing.assert_allclose(probs, lr.predict_proba(e), atol=1e-4)


@pytest.fixture(scope="module")
def setfit_run(learnable_model_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("setfit")
    train = write_csv(d / "train.csv", toy_rows(16, 11))
    val = write_csv(d / "val.csv", toy_rows(24, 12))
    out = d / "run"
    args = ["train", "--model", str(learnable_model_dir), "--method", "setfit"]
    args += ["--train", str(train), "--validation", str(val), "--test", str(val)]
    args += ["--setfit-pairs", "4", "--setfit-learning-rate", "1e-3", "--epochs", "2"]
    args += ["--max-length", "32", "--output-dir", str(out), "--no-progress"]
    assert main(args) == 0
    return out


def test_setfit_run_folder_loads_predicts_and_records_its_stage(setfit_run):
    info = json.loads((setfit_run / "tunelab.json").read_text())
    assert info["method"] == "setfit" and info["target"]["pooling"] == "mean"
    stage = info["method_details"]
    assert stage["pairs"] > 0 and stage["contrastive_steps"] > 0
    m = tunelab.load(setfit_run, precision="fp32")
    assert is_mean_pooled(m.model)
    texts = [r["text"] for r in toy_rows(6, 13)]
    out = m.predict(texts)
    assert {o["label"] for o in out} <= {"negative", "positive"}
    again = tunelab.load(setfit_run, precision="fp32")
    np.testing.assert_allclose(again.logits(texts), m.logits(texts), atol=1e-6)


def test_setfit_run_exports_to_onnx_with_parity(setfit_run, tmp_path):
    out = tmp_path / "onnx"
    args = ["export", "--model-dir", str(setfit_run), "--format", "onnx"]
    assert main([*args, "--output-dir", str(out)]) == 0
    texts = [r["text"] for r in toy_rows(8, 14)]
    onnx, run = tunelab.load(out), tunelab.load(setfit_run, precision="fp32")
    np.testing.assert_allclose(onnx.logits(texts, batch_size=3), run.logits(texts), atol=1e-4)


def test_a_plain_transformers_export_is_refused_with_the_reason(setfit_run, tmp_path, capsys):
    args = ["export", "--model-dir", str(setfit_run), "--format", "hf"]
    assert main([*args, "--output-dir", str(tmp_path / "hf")]) != 0
    err = capsys.readouterr().err
    assert "mean-pooled embeddings" in err and "--format onnx" in err
    assert not (tmp_path / "hf").exists()


def test_setfit_refuses_tasks_without_one_label_per_text(learnable_model_dir, tmp_path, capsys):
    rows = [{"text": r["text"], "label": 1.0} for r in toy_rows(8, 1)]
    data = write_csv(tmp_path / "reg.csv", rows)
    args = ["train", "--task", "regression", "--model", str(learnable_model_dir)]
    args += ["--method", "setfit", "--train", str(data), "--validation", str(data)]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) != 0
    assert "method 'setfit' does not support task 'regression'" in capsys.readouterr().err
