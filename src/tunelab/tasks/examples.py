"""What every task shares: the validated examples of a split and the small helpers on them.

Neutral ground: each task module imports from here, never from another task module, so a new
task is one new file that depends on this one and on nothing sideways.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tunelab.data.readers import MissingIn, read_rows
from tunelab.errors import DataError


@dataclass
class Examples:
    """One split as read from its file: ``texts`` are the inputs (a text, a token list, a
    question or a prompt, by task), ``labels`` the targets, ``lines`` the file line of each."""

    texts: list[Any]
    labels: list[Any]
    lines: list[int] = field(default_factory=list)
    path: str = ""

    def keep(self, indices: list[int]) -> None:
        """Keep only the examples at ``indices`` (in that order), in place."""
        self.texts = [self.texts[i] for i in indices]
        self.labels = [self.labels[i] for i in indices]
        self.lines = [self.lines[i] for i in indices]


def read_labelled(
    path: str,
    text_column: str,
    label_column: str,
    convert: Callable[[object, int], object],
    label_non_empty: bool = True,
    missing_in: MissingIn | None = None,
) -> Examples:
    """Rows of (text, target) with the target passed through ``convert(value, line)``, which
    raises DataError for a bad value. Shared by every task with one target per text. A missing
    text or target (empty, NaN, NA, null...; an empty target is a value when not
    ``label_non_empty``; ``missing_in`` finds one inside it) is refused or its row dropped, as
    the reading policy says."""
    rows = read_rows(
        path,
        required=[text_column, label_column],
        non_empty=[text_column, label_column] if label_non_empty else [text_column],
        not_null=[] if label_non_empty else [label_column],
        missing_in=missing_in,
    )
    return Examples(
        [str(r.values[text_column]) for r in rows],
        [convert(r.values[label_column], r.line) for r in rows],
        [r.line for r in rows],
        str(path),
    )


def unseen_label(
    ex: Examples, line: int, label: str, names: list[str], label_column: str
) -> DataError:
    """The error for a label the model never saw, naming file, line and field."""
    return DataError(
        ex.path,
        line,
        f"label '{label}' was not seen in training (known labels: {', '.join(names)})",
        field=label_column,
    )


def label_names(labels: list[str]) -> list[str]:
    """The label set, sorted numerically when every label is an integer, else alphabetically."""
    uniq = set(labels)
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return sorted(uniq)


def label_ids(ex: Examples, names: list[str], label_column: str) -> list[int]:
    """Map labels to ids; a label the model never saw is an error naming file and line."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for lab, line in zip(ex.labels, ex.lines, strict=True):
        if lab not in index:
            raise unseen_label(ex, line, lab, names, label_column)
        out.append(index[lab])
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def ce_options(spec: dict, logits: torch.Tensor) -> dict:
    """Label smoothing and class weights from the spec (--label-smoothing, --class-weights)."""
    out: dict = {}
    if spec.get("label_smoothing"):
        out["label_smoothing"] = spec["label_smoothing"]
    if spec.get("class_weights"):
        out["weight"] = torch.tensor(
            spec["class_weights"], dtype=torch.float32, device=logits.device
        )
    return out


def find_head(model: torch.nn.Module, known: tuple[str, ...], what: str) -> list[str]:
    """Names of the task head modules (which must train and be saved under every method):
    those of ``known`` that ``model`` has. Raises when it has none."""
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    found = [k for k in known if k in names]
    if not found:
        raise RuntimeError(f"cannot find the {what} head of {type(model).__name__}")
    return found


def classifier_head(model: torch.nn.Module) -> list[str]:
    """The head of sequence and token classifiers across architectures."""
    return find_head(
        model, ("classifier", "score", "classification_head", "logits_proj"), "classification"
    )


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize(text: str) -> str:
    """SQuAD answer normalisation: lower case, no punctuation, articles or extra spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """Normalised words; CJK text has no spaces, so it is scored per character, as the CMRC
    evaluation does."""
    out: list[str] = []
    for word in normalize(text).split():
        out += list(word) if re.search(r"[\u3400-\u9fff]", word) else [word]
    return out


def token_f1(pred: str, gold: str) -> float:
    """SQuAD token-overlap F1 of two answers."""
    p, g = answer_tokens(pred), answer_tokens(gold)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if not p or not g:
        return float(p == g)
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)
