"""Tasks are a closed set: each name maps to the module that implements it.

A task module provides: ``PEFT_TASK_TYPE``, ``read_examples``, ``label_names``,
``build_model``, ``head_module_names``, ``compute_metrics`` and ``decode``.
"""

from __future__ import annotations

from types import ModuleType

from tunelab.errors import ConfigError
from tunelab.tasks import text_classification

TASKS: dict[str, ModuleType] = {
    "text-classification": text_classification,
}


def get_task(name: str) -> ModuleType:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}' (available: {', '.join(TASKS)})") from None
