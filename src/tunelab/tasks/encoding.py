"""Examples -> token ids and targets, the one encoding step shared by training, evaluation,
ensembles and pruning."""

from __future__ import annotations

import numpy as np

from tunelab.data.batching import tokenize
from tunelab.tasks.base import Task
from tunelab.tasks.examples import Examples


def encode_split(
    task: Task, tokenizer, ex: Examples, spec: dict, max_length: int, label_column: str
) -> tuple[list[list[int]], list]:
    """(token ids, targets) for one split; token tasks align labels to sub-words themselves."""
    if task.encode is not None:
        return task.encode(tokenizer, ex, spec, max_length, label_column)
    assert task.encode_targets is not None  # Task.__post_init__: one of the two
    return tokenize(tokenizer, ex.texts, max_length), task.encode_targets(ex, spec, label_column)


def as_targets(task: Task, targets: list):
    """Targets as the task's metrics take them: per-token tasks keep the list (ragged), the
    others an array."""
    return targets if task.per_token else np.array(targets)
