"""The method contract: a ``Method`` record per fine-tuning method, registered in one line at the
end of its module, with its options as a typed dataclass.

A method turns a freshly built task model into the model that trains (``apply``), saves what it
trained into the run folder (``save``), and rebuilds the trained model from that folder
(``load``). Whatever the method, the task head always trains and is saved. Optional parts:

- ``options``: a dataclass of typed options made with :func:`option` (default, help text and a
  range check). The config's ``method`` group, the CLI flags, YAML validation and
  ``tunelab methods`` are all derived from these; an option two methods share (LoRA's alpha
  for AdaLoRA, ``num_virtual_tokens`` for the soft prompts) must have one type and default.
- ``supports(task)``: whether the method can train the task (default: every task).
- ``merge(model)``: a plain Transformers model with the method folded into its weights
  (``tunelab export --merge``); None where the method cannot be folded (prompts, adapters).
- ``after_step(model, step)``: called by the loop after every optimizer step (AdaLoRA's rank
  allocation); ``regularizer(model)``: a term added to the loss; ``finalize(model)``: called
  once after the best weights are restored; ``describe(model)``: JSON-able details for the run
  description and report (AdaLoRA's final ranks).
- ``spec``: entries the method adds to the run's target spec, read by the task when it builds
  the model (SetFit's ``{"pooling": "mean"}``); ``before_training(model, options, data)``: a
  stage of its own on the training data before the supervised loop (SetFit's contrastive
  training of the encoder and its head's fit), returning JSON-able details for the run.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunelab.errors import ConfigError
from tunelab.tasks.base import TASKS, Task

# build_from(path) -> a task model loaded from ``path`` (a pretrained or a saved full model)
BuildFrom = Callable[[str], torch.nn.Module]


@dataclass
class TrainingData:
    """What ``before_training`` may use: the encoded training split and the run's settings."""

    ids: list[list[int]]
    labels: list
    pad_id: int
    batch_size: int
    precision: str  # resolved (fp32 | bf16 | fp16)
    seed: int
    log: Callable[[str], None] = print
    # runs supervised training steps on other rows and targets (the caller's engine:
    # tunelab.training.supervised.run_stage), so a method needs no import of the training layer
    fit: Callable[..., tuple[int, float]] | None = None


@dataclass(frozen=True)
class MethodContext:
    """What a method may know about the run besides its options."""

    task: Task
    head: tuple[str, ...] = ()  # task head modules: always train, always saved
    total_steps: int = 0  # optimizer steps planned (AdaLoRA's budget schedule)
    # loading: the run folder's recorded {file: {"size", "sha256"}}, for files a method reads
    files: dict | None = None


def option(
    default: Any, help: str, check: Callable[[Any], bool] | None = None, why: str = ""
) -> Any:
    """A method option: its default, its help line (the CLI and ``tunelab methods`` show it),
    and optionally a range check with the reason shown when it fails."""
    return field(default=default, metadata={"help": help, "check": check, "why": why})


def field_problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` breaks what field ``f`` declares in its metadata (``choices``, or a
    ``check`` with its ``why``), or None; for method options and run settings alike."""
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        *head, last = choices
        return f"must be {', '.join(head)} or {last}" if head else f"must be {last}"
    check = f.metadata.get("check")
    if check is not None and not check(value):
        return str(f.metadata.get("why") or "is invalid")
    return None


def check_options(options: Any) -> None:
    """Run the options' range checks and their class's own ``validate()`` (cross-field
    rules); a failure is a ConfigError naming the key and the value."""
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        why = field_problem(f, value)
        if why:
            raise ConfigError(f"key '{f.name}' = {value!r} {why}")
    validate = getattr(type(options), "validate", None)
    if validate is not None:
        validate(options)


def _every_task(task: Task) -> bool:
    return True


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    default_learning_rate: float
    apply: Callable[[torch.nn.Module, Any, MethodContext], torch.nn.Module]
    save: Callable[[torch.nn.Module, Path], None]
    load: Callable[[Path, BuildFrom, str, MethodContext], torch.nn.Module]
    options: type | None = None
    supports: Callable[[Task], bool] = _every_task
    merge: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    after_step: Callable[[torch.nn.Module, int], None] | None = None
    regularizer: Callable[[torch.nn.Module], torch.Tensor] | None = None
    finalize: Callable[[torch.nn.Module], None] | None = None
    describe: Callable[[torch.nn.Module], dict] | None = None
    spec: dict = field(default_factory=dict)
    before_training: Callable[[torch.nn.Module, Any, TrainingData], dict] | None = None

    def __post_init__(self) -> None:
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise TypeError(f"method {self.name!r}: options must be a dataclass")

    def option_fields(self) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(self.options) if self.options is not None else ()

    def make_options(self, values: dict[str, Any]) -> Any:
        """The typed options from a flat mapping of config values (other keys ignored)."""
        if self.options is None:
            return None
        return self.options(
            **{f.name: values[f.name] for f in self.option_fields() if f.name in values}
        )

    def tasks(self) -> list[str]:
        """Names of the registered tasks this method can train."""
        return [name for name, task in TASKS.items() if self.supports(task)]


METHODS: dict[str, Method] = {}


def _option_signature(f: dataclasses.Field, owner: type) -> tuple[Any, Any]:
    return typing.get_type_hints(owner)[f.name], f.default


def register_method(method: Method) -> Method:
    """Add ``method`` to the registry. A second method with the same name, or an option that
    another method declares with another type or default, is a bug and raises ValueError."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    for f in method.option_fields():
        assert method.options is not None
        mine = _option_signature(f, method.options)
        for other in METHODS.values():
            for g in other.option_fields():
                assert other.options is not None
                if g.name == f.name and _option_signature(g, other.options) != mine:
                    raise ValueError(
                        f"method {method.name!r}: option {f.name!r} is {mine[0]} = {mine[1]!r} "
                        f"but method {other.name!r} declares it as "
                        f"{_option_signature(g, other.options)[0]} = {g.default!r}; a shared "
                        "option needs one type and one default"
                    )
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method '{name}' (available: {', '.join(METHODS)})") from None


def option_fields() -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every registered option once, in registration order: name -> (field, type)."""
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    for m in METHODS.values():
        if m.options is None:
            continue
        hints = typing.get_type_hints(m.options)
        for f in m.option_fields():
            out.setdefault(f.name, (f, hints[f.name]))
    return out


def valid_pairs() -> list[tuple[str, str]]:
    """Every (task, method) pair the registries say can train: the test matrix."""
    return [(t, m.name) for t in TASKS for m in METHODS.values() if m.supports(TASKS[t])]


def check_supported(method: Method, task: Task) -> None:
    if not method.supports(task):
        raise ConfigError(f"method '{method.name}' does not support task '{task.name}'")


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
