"""Single-label text classification: a sequence-classification head over the encoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tunelab.errors import DataError
from tunelab.tasks.base import Task, register_task
from tunelab.tasks.examples import (
    Examples,
    ce_options,
    classifier_head,
    label_ids,
    label_names,
    read_labelled,
    softmax,
)

PEFT_TASK_TYPE = "SEQ_CLS"
DESCRIPTION = "one label per text (sentiment, topic, intent); columns: text, label"
DEFAULT_METRIC = "accuracy"
SUMMARY_METRICS = ("accuracy", "macro_f1", "n")


def _label_string(value: object, line: int) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    """Read and validate a labelled file; labels are kept as strings ("1" and 1 are the same)."""
    return read_labelled(path, text_column, label_column, _label_string)


def make_spec(train: Examples, options: dict) -> dict:
    """What the run folder records about its targets: the label set, in index order."""
    names = label_names(train.labels)
    if len(names) < 2:
        raise DataError(
            train.path,
            None,
            f"only one label ({names[0]!r}) in the training data; "
            "classification needs at least two",
        )
    return {"labels": names}


def encode_targets(ex: Examples, spec: dict, label_column: str) -> list[int]:
    return label_ids(ex, spec["labels"], label_column)


def build_model(path: str, spec: dict, **load_kwargs):
    """A pretrained encoder with a fresh classification head for ``spec["labels"]``; with
    ``spec["pooling"] == "mean"`` the head reads the mean-pooled sentence embedding."""
    from transformers import AutoModelForSequenceClassification

    from tunelab.models.weights import load_pretrained

    names = spec["labels"]
    model = load_pretrained(
        AutoModelForSequenceClassification,
        path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        **load_kwargs,
    )
    if spec.get("pooling") == "mean":  # a SetFit head (tunelab.methods.setfit)
        from tunelab.tasks.pooled_head import mean_pooled

        model = mean_pooled(model)
    return model


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, spec: dict) -> torch.Tensor:
    # logits: (batch, num_labels); labels: (batch,)
    return torch.nn.functional.cross_entropy(logits.float(), labels, **ce_options(spec, logits))


def compute_metrics(logits: np.ndarray, labels: np.ndarray, spec: dict) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    # scikit-learn loads in about a second: only scoring needs it, not loading or predicting
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    names = spec["labels"]
    pred = logits.argmax(-1)
    ids = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    probs = softmax(logits)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        # over the labels the split holds or the model predicts: a test set of some of the
        # labels (a continual-learning stage's) is not marked down for the others
        "macro_f1": float(
            f1_score(
                labels, pred, labels=sorted({*labels, *pred}), average="macro", zero_division=0
            )
        ),
        "loss": float(nll) if math.isfinite(nll) else None,
        "n": int(len(labels)),
        "per_class": {
            n: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, n in enumerate(names)
        },
        "confusion_matrix": {
            "labels": names,
            "matrix": confusion_matrix(labels, pred, labels=ids).tolist(),
        },
    }


def decode(logits: np.ndarray, spec: dict) -> list[dict]:
    """Per text: the top label, its probability, and the probability of every label."""
    names = spec["labels"]
    probs = softmax(logits.astype(np.float64))
    out = []
    for row in probs:
        k = int(row.argmax())
        out.append(
            {
                "label": names[k],
                "score": float(row[k]),
                "probabilities": {n: float(row[i]) for i, n in enumerate(names)},
            }
        )
    return out


def report_figures(
    plots: Path, split: str, logits: np.ndarray, targets: np.ndarray, spec: dict, metrics: dict
) -> list[tuple[str, str]]:
    """The confusion matrix of ``split``; returns (title, file name) pairs."""
    from tunelab.plots import plot_confusion

    plot_confusion(
        metrics["confusion_matrix"], f"confusion matrix ({split})", plots / "confusion.png"
    )
    return [(f"Confusion matrix ({split})", "confusion.png")]


def report_tables(metrics: dict) -> list[tuple[str, tuple, list[tuple]]]:
    rows = [
        (lab, v["precision"], v["recall"], v["f1"], v["support"])
        for lab, v in metrics["per_class"].items()
    ]
    return [("Per class", ("label", "precision", "recall", "F1", "support"), rows)]


TASK = register_task(
    Task(
        "text-classification",
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
        sequence_level=True,
        single_label=True,
        softmax_loss=True,
        probabilities="softmax",
    )
)
