"""The task x method matrix: every (task, method) pair the registries call valid trains a few
steps on a tiny model built here, and the model its method saves is the model it loads back
(the same logits). A new task or method joins by registering; nothing here names one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_llama, toy_rows, write_csv
from tunelab.data.batching import predict_logits
from tunelab.methods import METHODS, MethodContext, TrainingData, valid_pairs
from tunelab.models.hf import align_pad, pad_id, quiet_transformers
from tunelab.tasks import TASKS
from tunelab.tasks.encoding import encode_split
from tunelab.training.loop import LoopSettings, fit
from tunelab.training.supervised import StepSettings, run_stage, supervised_job

# small option values so a pair trains in about a second (the defaults suit real models)
SMALL = {
    "lora_r": 4,
    "adalora_init_r": 4,
    "adalora_target_r": 2,
    "num_virtual_tokens": 4,
    "prompt_encoder_hidden_size": 16,
    "adapter_size": 8,
    "freeze_trainable_layers": 1,
    "setfit_pairs": 2,
}


@pytest.fixture(scope="module")
def task_files(tmp_path_factory) -> dict[str, Path]:
    """One tiny training file per built-in task (a task added later brings its own here)."""
    from test_generation import _rows as gen_rows
    from test_question_answering import _row as qa_row
    from test_token_classification import _sentence

    d = tmp_path_factory.mktemp("matrix-data")
    rng = random.Random(0)
    rows = toy_rows(16, 7)
    ml = [
        {"text": r["text"], "label": json.dumps([r["label"], "any"] if i % 3 else [r["label"]])}
        for i, r in enumerate(rows)
    ]
    reg = [{"text": r["text"], "label": 1.0 if r["label"] == "positive" else -1.0} for r in rows]
    files = {
        "text-classification": write_csv(d / "cls.csv", rows),
        "multi-label": write_csv(d / "ml.csv", ml),
        "regression": write_csv(d / "reg.csv", reg),
    }
    pairs = [{"text": r["text"], "text_pair": " ".join(reversed(r["text"].split()))} for r in rows]
    files["sentence-embedding"] = write_csv(d / "pairs.csv", pairs, ("text", "text_pair"))
    files["language-modeling"] = write_csv(
        d / "lm.csv", [{"text": r["text"]} for r in rows], ("text",)
    )
    for task, name, make in (
        (
            "token-classification",
            "ner.jsonl",
            lambda i: dict(zip(("tokens", "tags"), _sentence(rng, "BIO"), strict=True)),
        ),
        ("question-answering", "qa.jsonl", lambda i: qa_row(rng, i)),
        ("generation", "gen.jsonl", lambda i: gen_rows(16, 1)[i]),
    ):
        (d / name).write_text("".join(json.dumps(make(i)) + "\n" for i in range(16)))
        files[task] = d / name
    return files


@pytest.fixture(scope="module")
def tiny_lm_with_biases(tmp_path_factory) -> Path:
    """A 2-layer Llama with bias terms (so BitFit has something to train)."""
    return make_tiny_llama(
        tmp_path_factory.mktemp("tiny-llama-bias"), attention_bias=True, mlp_bias=True
    )


def test_every_task_has_a_file_and_every_method_a_pair(task_files):
    pairs = valid_pairs()
    assert {t for t, _ in pairs} == set(TASKS) == set(task_files)
    assert {m for _, m in pairs} == set(METHODS)


@pytest.mark.parametrize(
    "task_name,method_name", valid_pairs(), ids=[f"{t}/{m}" for t, m in valid_pairs()]
)
def test_pair_trains_and_reloads(
    task_name, method_name, task_files, learnable_model_dir, tiny_lm_with_biases, tmp_path
):
    from transformers import AutoTokenizer

    quiet_transformers()
    task, method = TASKS[task_name], METHODS[method_name]
    base = str(tiny_lm_with_biases if task.generative else learnable_model_dir)
    text_col, label_col = task.default_columns
    ex = task.read_examples(str(task_files[task_name]), text_col, label_col)
    spec = task.make_spec(
        ex, {"causal_model": task.generative, "doc_stride": 8, "max_new_tokens": 4}
    )
    spec.update(method.spec)  # as prepare() does: what the method's model reads
    tok = AutoTokenizer.from_pretrained(base)
    ids, y = encode_split(task, tok, ex, spec, 48, label_col)
    torch.manual_seed(0)
    model = task.build_model(base, spec)
    align_pad(model, tok)
    ctx = MethodContext(task, tuple(task.head_module_names(model)), total_steps=4)
    options = method.make_options(SMALL)
    model = method.apply(model, options, ctx)
    if method.before_training:  # the method's own stage (SetFit's contrastive training)
        method.before_training(
            model,
            options,
            TrainingData(ids, y, pad_id(tok), 4, "fp32", 0, lambda m: None, fit=run_stage),
        )
    losses: list[float] = []
    job = supervised_job(
        model,
        ids,
        y,
        pad_id(tok),
        lambda lg, t: task.loss_fn(lg, t, spec),
        StepSettings(batch_size=4, learning_rate=1e-2, epochs=1),
        task.collate_targets,
        loss_units=task.loss_units,
        after_step=method.after_step and (lambda s: method.after_step(model, s)),
        regularizer=method.regularizer and (lambda: method.regularizer(model)),
    )
    res = fit(
        job,
        LoopSettings(epochs=1, metric="m", log_every=1),
        lambda: {"m": 0.0},
        lambda e: losses.append(e["loss"]) if e["type"] == "train" else None,
    )
    assert res.steps == 4 and len(losses) == 4 and all(np.isfinite(losses)), losses
    if method.finalize:
        method.finalize(model)
    model.eval()
    out = tmp_path / "run"
    out.mkdir()
    method.save(model, out)
    again = method.load(out, lambda p: task.build_model(p, spec), base, ctx)
    align_pad(again, tok)
    again.eval()
    sample = ids[:3]
    a = predict_logits(model, sample, pad_id(tok), per_token=task.per_token)
    b = predict_logits(again, sample, pad_id(tok), per_token=task.per_token)
    for x, z in zip(a, b, strict=True):
        np.testing.assert_allclose(z, x, atol=1e-5)
