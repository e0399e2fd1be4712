"""The task contract: a ``Task`` record per task, registered in one line at the end of its
module; every hook is an explicit field (None where the task has none), so a misspelt hook is
a TypeError at import time instead of a silently skipped code path.

Capability flags say what a task can do; callers ask the record, never a list of task names:

- ``per_token``: targets per token (padded, ``collate_targets``), not one per text;
- ``sequence_level``: one text in, one target out (soft prompts, augmentation);
- ``single_label``: exactly one class per text (per-class few-shot subsets);
- ``softmax_loss``: a cross-entropy over classes (label smoothing, class weights, R-Drop);
- ``probabilities``: ``"softmax"`` or ``"sigmoid"`` scores that ensembles may average;
- ``generative``: decodes text, scored by generating (``evaluate_split``);
- ``baseline_before_training``: the untrained model is scored too, for contrast;
- ``paired``: each row holds two texts the model itself splits (contrastive pairs), so no
  method may add virtual tokens in front of them (prefix tuning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.errors import ConfigError
from tunelab.tasks.examples import Examples

Figures = Callable[[Path, str, Any, Any, dict, dict], list[tuple[str, str]]]
Tables = Callable[[dict], list[tuple[str, tuple, list[tuple]]]]


@dataclass(frozen=True)
class Task:
    """How one task reads, encodes, trains, scores and decodes.

    Required: ``read_examples(path, text_column, label_column) -> Examples``,
    ``make_spec(train, options) -> dict`` (the JSON-able target description saved in the run),
    ``build_model(path, spec, **load_kwargs)``, ``head_module_names(model)`` (modules that
    always train and are saved), ``loss_fn(logits, targets, spec)``, ``report_figures`` and
    ``report_tables`` (for report.html).

    Encoding: ``encode_targets(examples, spec, label_column)`` (the text is tokenised by the
    caller) or ``encode(tokenizer, examples, spec, max_length, label_column) -> (ids,
    targets)`` for tasks that align targets to sub-words themselves; exactly one of the two.

    Scoring: ``compute_metrics(logits, targets, spec)`` from logits, or
    ``evaluate_split(model, tokenizer, ids, targets, spec, batch_size, full)`` for tasks that
    score by running the model themselves (then ``metric_names`` lists what it reports).

    Predicting: ``decode(logits, spec)`` or ``predict_texts(tuned_model, items, batch_size)``
    when a prediction needs the text (character offsets). ``read_inputs(path, column)`` reads
    prediction inputs that are not one text per row (question plus context).
    """

    name: str
    description: str
    peft_task_type: str
    default_metric: str
    summary_metrics: tuple[str, ...]
    read_examples: Callable[[str, str, str], Examples]
    make_spec: Callable[[Examples, dict], dict]
    build_model: Callable[..., torch.nn.Module]
    head_module_names: Callable[[torch.nn.Module], list[str]]
    loss_fn: Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]
    report_figures: Figures
    report_tables: Tables
    default_columns: tuple[str, str] = ("text", "label")
    encode_targets: Callable[[Examples, dict, str], list] | None = None
    encode: Callable[..., tuple[list[list[int]], list]] | None = None
    collate_targets: Callable[[list], torch.Tensor] = torch.tensor
    loss_units: Callable[[torch.Tensor], int] | None = None
    compute_metrics: Callable[[Any, Any, dict], dict] | None = None
    evaluate_split: Callable[..., dict] | None = None
    metric_names: tuple[str, ...] | None = None
    decode: Callable[[Any, dict], list[dict]] | None = None
    predict_texts: Callable[[Any, list, int], list[dict]] | None = None
    read_inputs: Callable[[str | None, str], list[tuple[dict, Any]]] | None = None
    tune_thresholds: Callable[[Any, Any, dict], dict] | None = None
    # capability flags (see the module docstring)
    per_token: bool = False
    sequence_level: bool = False
    single_label: bool = False
    softmax_loss: bool = False
    probabilities: str | None = None
    generative: bool = False
    baseline_before_training: bool = False
    paired: bool = False

    def __post_init__(self) -> None:
        def need_one(a: str, b: str) -> None:
            if (getattr(self, a) is None) == (getattr(self, b) is None):
                raise TypeError(f"task {self.name!r}: give exactly one of {a} and {b}")

        need_one("encode_targets", "encode")
        need_one("compute_metrics", "evaluate_split")
        need_one("decode", "predict_texts")
        if self.evaluate_split is not None and not self.metric_names:
            raise TypeError(f"task {self.name!r}: evaluate_split needs metric_names")
        if self.probabilities not in (None, "softmax", "sigmoid"):
            raise TypeError(f"task {self.name!r}: probabilities is softmax, sigmoid or None")

    @property
    def supports_thresholds(self) -> bool:
        """Whether decision thresholds are calibrated on validation after training."""
        return self.tune_thresholds is not None


def no_figures(plots: Path, split: str, logits, targets, spec: dict, metrics: dict) -> list:
    """``report_figures`` of a task whose report has no figure of its own."""
    return []


def no_tables(metrics: dict) -> list:
    """``report_tables`` of a task whose report has no table of its own."""
    return []


TASKS: dict[str, Task] = {}

# metrics where smaller is better; every other metric is maximised
LOWER_IS_BETTER = frozenset(
    {"loss", "mae", "rmse", "mse", "baseline_mae", "baseline_rmse", "perplexity"}
)


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry; a second task with the same name is a bug."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}' (available: {', '.join(TASKS)})") from None
