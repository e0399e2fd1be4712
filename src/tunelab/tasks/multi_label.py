"""Multi-label classification: any number of labels per text (sigmoid outputs).

Labels come as a JSON list (JSONL) or a ';'-separated string (CSV/TSV); an empty value means
"none of the labels". After training, one decision threshold per label is tuned on the
validation split (the F1-maximising value on a grid) and saved with the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tunelab.data.readers import Row
from tunelab.data_policy import is_missing, shown
from tunelab.errors import DataError
from tunelab.tasks.base import Task, register_task
from tunelab.tasks.examples import (
    Examples,
    classifier_head,
    label_names,
    read_labelled,
    unseen_label,
)

PEFT_TASK_TYPE = "SEQ_CLS"
DESCRIPTION = "any number of labels per text; columns: text, labels (JSON list or 'a;b')"
DEFAULT_METRIC = "micro_f1"
SUMMARY_METRICS = ("micro_f1", "macro_f1", "subset_accuracy", "n")
GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def _split(value, path: str, line: int, column: str) -> list[str]:
    if isinstance(value, list):
        if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise DataError(
                path, line, f"expected a list of labels, got {shown(value)}", field=column
            )
        items = [str(v).strip() for v in value]
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        items = [p.strip() for p in str(value).split(";")]
    else:
        raise DataError(
            path, line, f"expected a list or 'a;b' string, got {shown(value)}", field=column
        )
    return sorted({i for i in items if i})


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    """Texts with their label lists; an empty label value (``[]`` or an empty cell) means "none
    of the labels", while NaN, NA, null... (the whole value or one of its labels) is a missing
    value, refused or dropped as the reading policy says."""

    def missing_label(row: Row) -> tuple[str, object, None] | None:
        value = row.values.get(label_column)
        items = value.split(";") if isinstance(value, str) else value
        if isinstance(items, list):
            for item in items:
                if is_missing(item, empty=False):
                    return label_column, item, None
        return None

    return read_labelled(
        path,
        text_column,
        label_column,
        lambda v, line: _split(v, path, line, label_column),
        label_non_empty=False,
        missing_in=missing_label,
    )


def make_spec(train: Examples, options: dict) -> dict:
    names = label_names([lab for labs in train.labels for lab in labs])
    if len(names) < 1:
        raise DataError(train.path, None, "no labels at all in the training data")
    return {"labels": names, "thresholds": [0.5] * len(names)}


def encode_targets(ex: Examples, spec: dict, label_column: str) -> list[list[float]]:
    """Multi-hot vectors (N, num_labels); an unknown label names file and line."""
    index = {n: i for i, n in enumerate(spec["labels"])}
    out = []
    for labs, line in zip(ex.labels, ex.lines, strict=True):
        v = [0.0] * len(index)
        for lab in labs:
            if lab not in index:
                raise unseen_label(ex, line, lab, spec["labels"], label_column)
            v[index[lab]] = 1.0
        out.append(v)
    return out


def build_model(path: str, spec: dict, **load_kwargs):
    from transformers import AutoModelForSequenceClassification

    from tunelab.models.weights import load_pretrained

    names = spec["labels"]
    return load_pretrained(
        AutoModelForSequenceClassification,
        path,
        num_labels=len(names),
        problem_type="multi_label_classification",
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        **load_kwargs,
    )


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, spec: dict) -> torch.Tensor:
    # logits, targets: (batch, num_labels)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.float())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def tune_thresholds(logits: np.ndarray, targets: np.ndarray, spec: dict) -> dict:
    """Per label, the grid threshold with the best validation F1 (ties: closest to 0.5)."""
    from sklearn.metrics import f1_score

    probs = _sigmoid(logits)
    best = []
    for j in range(probs.shape[1]):
        scores = [
            (f1_score(targets[:, j], probs[:, j] >= t, zero_division=0), -abs(t - 0.5), t)
            for t in GRID
        ]
        best.append(float(max(scores)[2]))
    return {**spec, "thresholds": best}


def compute_metrics(logits: np.ndarray, targets: np.ndarray, spec: dict) -> dict:
    """micro/macro F1, per-label precision/recall/F1, subset (exact-match) accuracy."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    names = spec["labels"]
    probs = np.clip(_sigmoid(logits), 1e-12, 1 - 1e-12)
    pred = (probs >= np.array(spec["thresholds"])).astype(int)
    true = targets.astype(int)
    p, r, f, s = precision_recall_fscore_support(true, pred, zero_division=0)
    bce = -(true * np.log(probs) + (1 - true) * np.log(1 - probs)).mean()
    return {
        "micro_f1": float(f1_score(true, pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(true, pred, average="macro", zero_division=0)),
        "subset_accuracy": float((pred == true).all(axis=1).mean()),
        "loss": float(bce),
        "n": int(len(true)),
        "per_label": {
            n: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
                "threshold": spec["thresholds"][i],
            }
            for i, n in enumerate(names)
        },
    }


def decode(logits: np.ndarray, spec: dict) -> list[dict]:
    """Per text: the labels over their thresholds, and every label's probability."""
    probs = _sigmoid(logits)
    out = []
    for row in probs:
        out.append(
            {
                "labels": [
                    n
                    for n, p, t in zip(spec["labels"], row, spec["thresholds"], strict=True)
                    if p >= t
                ],
                "scores": {n: float(p) for n, p in zip(spec["labels"], row, strict=True)},
            }
        )
    return out


def report_figures(
    plots: Path, split: str, logits: np.ndarray, targets: np.ndarray, spec: dict, metrics: dict
) -> list[tuple[str, str]]:
    from tunelab.plots import plot_f1_bars

    plot_f1_bars(
        {n: metrics["per_label"][n]["f1"] for n in spec["labels"]},
        "F1",
        f"F1 per label ({split})",
        plots / "per_label_f1.png",
    )
    return [(f"F1 per label ({split})", "per_label_f1.png")]


def report_tables(metrics: dict) -> list[tuple[str, tuple, list[tuple]]]:
    rows = [
        (lab, v["precision"], v["recall"], v["f1"], v["support"], v["threshold"])
        for lab, v in metrics["per_label"].items()
    ]
    return [("Per label", ("label", "precision", "recall", "F1", "support", "threshold"), rows)]


TASK = register_task(
    Task(
        "multi-label",
        DESCRIPTION,
        PEFT_TASK_TYPE,
        DEFAULT_METRIC,
        SUMMARY_METRICS,
        read_examples=read_examples,
        make_spec=make_spec,
        build_model=build_model,
        head_module_names=classifier_head,
        loss_fn=loss_fn,
        report_figures=report_figures,
        report_tables=report_tables,
        encode_targets=encode_targets,
        compute_metrics=compute_metrics,
        decode=decode,
        tune_thresholds=tune_thresholds,
        sequence_level=True,
        probabilities="sigmoid",
    )
)
