"""Tasks are a closed set: each name maps to the module that implements it.

A task module provides:

- ``DESCRIPTION``, ``PEFT_TASK_TYPE``, ``DEFAULT_METRIC`` (picks the best checkpoint) and
  ``SUMMARY_METRICS`` (printed after training);
- ``read_examples(path, text_column, label_column)``: validated examples;
- ``make_spec(train, options)``: the JSON-able target description saved in the run folder
  (label set, or target mean/std);
- ``encode_targets(examples, spec, label_column)`` (or ``encode``, below),
  ``build_model(path, spec)``, ``head_module_names(model)``, ``loss_fn(logits, targets, spec)``;
- ``compute_metrics(logits, targets, spec)``, ``decode(logits, spec)`` (or ``predict_texts``);
- ``report_figures(...)`` and ``report_tables(metrics)`` for ``report.html``;
- optionally ``DEFAULT_COLUMNS``; ``encode(tokenizer, examples, spec, max_length, column)``,
  ``collate_targets`` and ``PER_TOKEN`` (tasks with one target per token);
  ``predict_texts(model, texts)`` (predictions that need the text, e.g. character offsets);
- optionally ``tune_thresholds(logits, targets, spec)``: returns a spec calibrated on the
  validation split after training (multi-label decision thresholds).
"""

from __future__ import annotations

from types import ModuleType

from tunelab.errors import ConfigError
from tunelab.tasks import (generation, multi_label, question_answering, regression,
                           text_classification, token_classification)

TASKS: dict[str, ModuleType] = {
    "text-classification": text_classification,
    "multi-label": multi_label,
    "regression": regression,
    "token-classification": token_classification,
    "question-answering": question_answering,
    "generation": generation,
}

# metrics where smaller is better; every other metric is maximised
LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse", "mse", "baseline_mae", "baseline_rmse",
                             "perplexity"})


def get_task(name: str) -> ModuleType:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}' (available: {', '.join(TASKS)})") from None
