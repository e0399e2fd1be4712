"""Fine-tuning methods: one module each, registered in one line; duplicates are rejected.

A method turns a freshly built task model into the model that trains (``apply``), saves what it
trained into the run folder (``save``), and rebuilds the trained model from that folder (``load``).
Whatever the method, the task head always trains and is saved. Optional parts:

- ``merge(model)``: a plain Transformers model with the method folded into its weights
  (``tunelab export --merge``); None where the method cannot be folded (prompts, adapters).
- ``after_step(model, step)``: called by the loop after every optimizer step (AdaLoRA's rank
  allocation); ``regularizer(model)``: a term added to the loss; ``finalize(model)``: called
  once after the best weights are restored; ``describe(model)``: JSON-able details for the run
  description and report (AdaLoRA's final ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from tunelab.errors import ConfigError

# build_from(path) -> a task model loaded from ``path`` (a pretrained or a saved full model)
BuildFrom = Callable[[str], torch.nn.Module]
Apply = Callable[[torch.nn.Module, dict[str, Any], list[str], str], torch.nn.Module]

ALL_TASKS = ("text-classification", "multi-label", "regression", "token-classification",
             "question-answering", "generation")
SEQUENCE_TASKS = ("text-classification", "multi-label", "regression")


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    default_learning_rate: float
    apply: Apply
    save: Callable[[torch.nn.Module, Path], None]
    load: Callable[[Path, BuildFrom, str], torch.nn.Module]
    tasks: tuple[str, ...] = ALL_TASKS
    options: tuple[str, ...] = ()  # config keys the method reads (shown by `tunelab methods`)
    merge: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    after_step: Callable[[torch.nn.Module, int], None] | None = None
    regularizer: Callable[[torch.nn.Module], torch.Tensor] | None = None
    finalize: Callable[[torch.nn.Module], None] | None = None
    describe: Callable[[torch.nn.Module], dict] | None = None


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
    """(trainable, total) parameter counts; PEFT prompt tables count once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


# each module ends with its one-line register_method(...) call; import order = listing order
from tunelab.methods import full, freeze, bitfit, lora, adalora, ia3, prompt, adapter  # noqa: E402,I001

__all__ = ["ALL_TASKS", "METHODS", "Method", "SEQUENCE_TASKS", "count_parameters", "get_method",
           "register_method", "adalora", "adapter", "bitfit", "freeze", "full", "ia3", "lora",
           "prompt"]
