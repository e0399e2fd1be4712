"""Fine-tuning methods: one module each, registered in one line; duplicates are rejected.

A method turns a freshly built task model into the model that trains (``apply``), saves what it
trained into the run folder (``save``), and rebuilds the trained model from that folder (``load``).
Whatever the method, the task head always trains and is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from tunelab.errors import ConfigError

# build_from(path) -> a task model loaded from ``path`` (a pretrained or a saved full model)
BuildFrom = Callable[[str], torch.nn.Module]


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    default_learning_rate: float
    apply: Callable[[torch.nn.Module, dict[str, Any], list[str], str], torch.nn.Module]
    save: Callable[[torch.nn.Module, Path], None]
    load: Callable[[Path, BuildFrom, str], torch.nn.Module]
    tasks: tuple[str, ...] = ("text-classification", "multi-label", "regression",
                              "token-classification", "question-answering", "generation")


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry; a second method with the same name is a bug."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}' (available: {', '.join(METHODS)})") from None


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


from tunelab.methods import full, lora  # noqa: E402  (each module registers itself)

__all__ = ["METHODS", "Method", "count_parameters", "get_method", "register_method", "full", "lora"]
