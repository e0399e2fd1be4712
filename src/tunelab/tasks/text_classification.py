"""Single-label text classification: a sequence-classification head over the encoder."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from tunelab.data.readers import read_rows
from tunelab.errors import DataError

PEFT_TASK_TYPE = "SEQ_CLS"
DESCRIPTION = "one label per text (sentiment, topic, intent); columns: text, label"
DEFAULT_METRIC = "accuracy"
SUMMARY_METRICS = ("accuracy", "macro_f1", "n")


@dataclass
class Examples:
    texts: list[str]
    labels: list[str]
    lines: list[int] = field(default_factory=list)
    path: str = ""


def read_labelled(path: str, text_column: str, label_column: str,
                  convert: Callable[[object, int], object],
                  label_non_empty: bool = True) -> Examples:
    """Rows of (text, target) with the target passed through ``convert(value, line)``, which
    raises DataError for a bad value. Shared by every task with one target per text."""
    rows = read_rows(path, required=[text_column, label_column],
                     non_empty=[text_column, label_column] if label_non_empty else [text_column])
    return Examples([str(r.values[text_column]) for r in rows],
                    [convert(r.values[label_column], r.line) for r in rows],  # type: ignore[misc]
                    [r.line for r in rows], str(path))


def _label_string(value: object, line: int) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    """Read and validate a labelled file; labels are kept as strings ("1" and 1 are the same)."""
    return read_labelled(path, text_column, label_column, _label_string)


def unseen_label(ex: Examples, line: int, label: str, names: list[str],
                 label_column: str) -> DataError:
    """The error for a label the model never saw, naming file, line and field."""
    return DataError(ex.path, line, f"label '{label}' was not seen in training "
                     f"(known labels: {', '.join(names)})", field=label_column)


def label_names(labels: list[str]) -> list[str]:
    """The label set, sorted numerically when every label is an integer, else alphabetically."""
    uniq = set(labels)
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return sorted(uniq)


def make_spec(train: Examples, options: dict) -> dict:
    """What the run folder records about its targets: the label set, in index order."""
    names = label_names(train.labels)
    if len(names) < 2:
        raise DataError(train.path, None, f"only one label ({names[0]!r}) in the training data; "
                        "classification needs at least two")
    return {"labels": names}


def encode_targets(ex: Examples, spec: dict, label_column: str) -> list[int]:
    return label_ids(ex, spec["labels"], label_column)


def label_ids(ex: Examples, names: list[str], label_column: str) -> list[int]:
    """Map labels to ids; a label the model never saw is an error naming file and line."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for lab, line in zip(ex.labels, ex.lines):
        if lab not in index:
            raise unseen_label(ex, line, lab, names, label_column)
        out.append(index[lab])
    return out


def build_model(path: str, spec: dict, **load_kwargs):
    """A pretrained encoder with a fresh classification head for ``spec["labels"]``."""
    from transformers import AutoModelForSequenceClassification

    names = spec["labels"]
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, **load_kwargs)


def head_module_names(model: torch.nn.Module) -> list[str]:
    """Names of the task head modules, which must train and be saved under every method."""
    known = ("classifier", "score", "classification_head", "logits_proj")
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    found = [k for k in known if k in names]
    if not found:
        raise RuntimeError(f"cannot find the classification head of {type(model).__name__}")
    return found


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, spec: dict) -> torch.Tensor:
    # logits: (batch, num_labels); labels: (batch,)
    return torch.nn.functional.cross_entropy(logits.float(), labels, **ce_options(spec, logits))


def ce_options(spec: dict, logits: torch.Tensor) -> dict:
    """Label smoothing and class weights from the spec (--label-smoothing, --class-weights)."""
    out: dict = {}
    if spec.get("label_smoothing"):
        out["label_smoothing"] = spec["label_smoothing"]
    if spec.get("class_weights"):
        out["weight"] = torch.tensor(spec["class_weights"], dtype=torch.float32,
                                     device=logits.device)
    return out


def compute_metrics(logits: np.ndarray, labels: np.ndarray, spec: dict) -> dict:
    """accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    names = spec["labels"]
    pred = logits.argmax(-1)
    ids = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    probs = softmax(logits)
    nll = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=ids, average="macro", zero_division=0)),
        "loss": float(nll) if math.isfinite(nll) else None,
        "n": int(len(labels)),
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(s[i])} for i, n in enumerate(names)},
        "confusion_matrix": {"labels": names,
                             "matrix": confusion_matrix(labels, pred, labels=ids).tolist()},
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def decode(logits: np.ndarray, spec: dict) -> list[dict]:
    """Per text: the top label, its probability, and the probability of every label."""
    names = spec["labels"]
    probs = softmax(logits.astype(np.float64))
    out = []
    for row in probs:
        k = int(row.argmax())
        out.append({"label": names[k], "score": float(row[k]),
                    "probabilities": {n: float(row[i]) for i, n in enumerate(names)}})
    return out


def report_figures(plots: Path, split: str, logits: np.ndarray, targets: np.ndarray,
                   spec: dict, metrics: dict) -> list[tuple[str, str]]:
    """The confusion matrix of ``split``; returns (title, file name) pairs."""
    from tunelab.evaluation.report import plot_confusion

    plot_confusion(metrics["confusion_matrix"], f"confusion matrix ({split})",
                   plots / "confusion.png")
    return [(f"Confusion matrix ({split})", "confusion.png")]


def report_tables(metrics: dict) -> list[tuple[str, tuple, list[tuple]]]:
    rows = [(lab, v["precision"], v["recall"], v["f1"], v["support"])
            for lab, v in metrics["per_class"].items()]
    return [("Per class", ("label", "precision", "recall", "F1", "support"), rows)]
