"""Typed run configuration: dataclasses, YAML files, and command-line overrides.

The key namespace is flat: every field name is unique across the groups, so a YAML file and the
command line use the same keys (``learning_rate`` in YAML, ``--learning-rate`` on the command
line). Precedence: dataclass defaults < YAML file < command-line flags. Unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunelab.continual_args import ContinualArgs, inherited
from tunelab.data_policy import DEFAULT_MAX_FIELD_CHARS, ReadPolicy
from tunelab.errors import ConfigError
from tunelab.settings_fields import setting as _f


@dataclass
class ModelArgs:
    model: str = _f(
        "minilm-l6", "model alias (see `tunelab models`), local folder or Hugging Face id"
    )
    max_length: int = _f(
        128,
        "maximum tokens per text; longer texts are truncated (question-"
        "answering: per window; generation: prompt plus response)",
        check=">=8",
    )
    doc_stride: int = _f(
        128, "question-answering: tokens shared by neighbouring windows of a long context"
    )
    max_new_tokens: int = _f(32, "generation: most tokens generated per prompt")


@dataclass
class DataArgs:
    task: str = _f("text-classification", "what to learn (see `tunelab tasks`)")
    train: str | None = _f(None, "training file (.csv, .tsv or .jsonl)")
    validation: str | None = _f(None, "validation file: model selection and early stopping")
    test: str | None = _f(None, "optional test file, evaluated once with the best checkpoint")
    text_column: str | None = _f(
        None,
        "column (or JSON key) holding the text (default: text; tokens for "
        "token-classification; question for question-answering; prompt for generation)",
    )
    label_column: str | None = _f(
        None,
        "column (or JSON key) holding the target: a label; a number for regression; a "
        "JSON list or 'a;b' for multi-label; tags for token-classification (default: "
        "label; tags for token-classification; answers for question-answering; response for "
        "generation)",
    )
    max_train_examples: int | None = _f(
        None, "use only the first N training rows (quick runs)", check=">=1"
    )
    max_train_examples_per_class: int | None = _f(
        None,
        "keep at most N training examples per label, drawn with the seed (few-shot "
        "learning curves; text-classification)",
        check=">=1",
    )
    max_eval_examples: int | None = _f(
        None,
        "use only the first N rows of validation and test (quick runs on a CPU; report "
        "it with the scores)",
    )
    max_field_chars: int = _f(
        DEFAULT_MAX_FIELD_CHARS,  # why this value: tunelab/data_policy.py
        "longest value a field of a data file may hold, in characters, the same for every "
        "format (a token or tag list counts as its items joined by spaces); a longer one is an "
        "error naming file, line and field",
        check=">=1",
    )
    drop_missing: bool = _f(
        False,
        "drop rows whose text or target is missing (an empty cell, NaN, nan, NA, N/A, n/a, "
        "null, NULL or JSON null) and print how many, instead of stopping at the first with "
        "an error",
    )


@dataclass
class TrainArgs:
    output_dir: str | None = _f(
        None, "run folder to create (refused if it exists, see --overwrite)"
    )
    overwrite: bool = _f(False, "replace an existing output folder (only once training succeeds)")
    epochs: float = _f(3.0, "passes over the training data", check=">0")
    batch_size: int = _f(32, "examples per forward pass (per process)", check=">=1")
    gradient_accumulation_steps: int = _f(
        1,
        "forward passes per optimizer step: the update equals one batch of "
        "batch_size * N (loss normalised over all its examples/tokens)",
        check=">=1",
    )
    learning_rate: float | None = _f(
        None,
        "peak learning rate; default depends on the method (`tunelab methods` lists them)",
        check=">0",
    )
    weight_decay: float = _f(
        0.01, "AdamW weight decay (not applied to biases and LayerNorm)", check=">=0"
    )
    warmup_ratio: float = _f(
        0.06, "fraction of steps with linear warm-up before the schedule", check="[0,1)"
    )
    lr_scheduler: str = _f(
        "linear",
        "after warm-up: linear (decay to 0), cosine, or constant",
        choices=("linear", "cosine", "constant"),
    )
    precision: str = _f(
        "auto",
        "fp32, bf16 or fp16 (GPU only); auto: bf16 on a GPU that has it, else fp16 on a GPU; "
        "on a CPU bf16 where it is native (AMX or AVX-512 BF16), else fp32",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    gradient_checkpointing: bool = _f(
        False, "recompute activations in the backward pass: less memory, about 30% slower"
    )
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 disables)")
    group_by_length: bool = _f(
        True,
        "batch texts of similar length together (little padding, faster); --no-group-by-length: "
        "random batches, as a plain Trainer script draws them",
    )
    packing: bool = _f(
        True,
        "decoder sequence classification (gemma, SmolLM2): random batches packed end to end "
        "into rows, as fast as length grouping and without padding; --no-packing: pad batches",
    )
    eval_steps: int | None = _f(
        None, "also evaluate every N optimizer steps (default: per epoch)", check=">=1"
    )
    log_steps: int = _f(
        10, "log the training loss and throughput every N optimizer steps", check=">=1"
    )
    early_stopping_patience: int | None = _f(
        3, "stop after N evaluations without improvement (0 or null disables)"
    )
    metric_for_best: str = _f(
        "auto",
        "validation metric that picks the best checkpoint (auto: accuracy for "
        "classification, rmse for regression, f1 for multi-label, NER and QA, loss "
        "for generation)",
    )
    regression_loss: str = _f("mse", "regression loss: mse or huber")
    save_steps: int | None = _f(
        200,
        "checkpoint every N optimizer steps, and after every epoch (0 or null: only per epoch)",
        check=">=0",
    )
    save_total_limit: int = _f(2, "checkpoints kept (the newest)", check=">=1")
    resume: bool = _f(
        False,
        "continue the interrupted run of --output-dir from its newest "
        "checkpoint (in <output-dir>.checkpoints/)",
    )
    resume_from: str | None = _f(None, "continue from this checkpoint folder")
    seed: int = _f(42, "random seed for weights, data order and dropout")
    num_threads: int | None = _f(
        None, "CPU threads for PyTorch per process (default: the cores divided among the processes)"
    )
    num_processes: int = _f(
        1,
        "data-parallel processes on this machine, started with torchrun "
        "(each takes --batch-size examples per step); under accelerate "
        "launch or torchrun the launcher's count is used",
        check=">=1",
    )
    progress: bool = _f(True, "show a progress bar (use --no-progress to hide it)")
    report_to: str = _f(
        "tensorboard",
        "tensorboard (event files in <run>/tensorboard), mlflow "
        "(a local store in mlruns/ next to the run) or none",
        choices=("tensorboard", "mlflow", "none"),
    )


@dataclass
class RegularisationArgs:
    label_smoothing: float = _f(
        0.0,
        "cross-entropy label smoothing (e.g. 0.1; text- and token-classification)",
        check="[0,1)",
    )
    class_weights: str | None = _f(
        None,
        "auto: weight each class's loss by n / (classes x its count), for imbalanced labels",
        choices=("auto",),
    )
    rdrop_alpha: float = _f(
        0.0,
        "R-Drop: two dropout passes per batch and this weight on "
        "their symmetric KL divergence (e.g. 1.0; 0 = off)",
        check=">=0",
    )
    adversarial: str | None = _f(
        None, "adversarial training on the word embeddings: fgm or pgd", choices=("fgm", "pgd")
    )
    adv_epsilon: float = _f(
        1.0, "fgm/pgd: L2 norm of each example's embedding perturbation", check=">0"
    )
    adv_steps: int = _f(3, "pgd: ascent steps per batch", check=">=1")
    adv_alpha: float = _f(0.3, "pgd: L2 size of each ascent step", check=">0")
    hidden_dropout: float | None = _f(None, "override the model's hidden dropout", check="[0,1)")
    attention_dropout: float | None = _f(
        None, "override the model's attention dropout", check="[0,1)"
    )
    classifier_dropout: float | None = _f(
        None, "override the dropout before the task head", check="[0,1)"
    )
    augment: str | None = _f(
        None,
        "augment the training split: eda (synonym replacement, "
        "insertion, swap, deletion; English and Chinese) or mlm "
        "(contextual substitution with --augment-mlm-model)",
        choices=("eda", "mlm"),
    )
    augment_copies: int = _f(1, "augmented versions per training example", check=">=1")
    augment_alpha: float = _f(0.1, "share of the words each augmentation changes", check="(0,1)")
    augment_mlm_model: str | None = _f(None, "masked language model folder for --augment mlm")


_method_args: tuple[tuple[str, ...], type] | None = None
_fields: tuple[type, dict[str, tuple[str, dataclasses.Field, Any]]] | None = None


def method_args_class() -> type:
    """The ``method`` group: the method's name plus every registered method's options, each
    once (derived from the method registry, so a new method's options need no edit here)."""
    global _method_args
    from tunelab.methods import METHODS
    from tunelab.methods.base import option_fields

    key = tuple(METHODS)
    if _method_args is None or _method_args[0] != key:
        specs: list[tuple[str, Any, Any]] = [
            ("method", str, _f("full", "fine-tuning method (see `tunelab methods`)"))
        ]
        for name, (f, tp) in option_fields().items():
            specs.append((name, tp, field(default=f.default, metadata=dict(f.metadata))))
        _method_args = (key, dataclasses.make_dataclass("MethodArgs", specs))
    return _method_args[1]


def groups() -> dict[str, type]:
    """Config groups in order; the key namespace is flat across them."""
    return {
        "model": ModelArgs,
        "data": DataArgs,
        "method": method_args_class(),
        "train": TrainArgs,
        "regularisation": RegularisationArgs,
        "continual": ContinualArgs,
    }


@dataclass
class RunConfig:
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    method: Any = field(default_factory=lambda: method_args_class()())
    train: TrainArgs = field(default_factory=TrainArgs)
    regularisation: RegularisationArgs = field(default_factory=RegularisationArgs)
    continual: ContinualArgs = field(default_factory=ContinualArgs)

    def flat(self) -> dict[str, Any]:
        """All keys in the flat namespace, as written to a run's ``config.yaml``."""
        out: dict[str, Any] = {}
        for g in groups():
            out.update(dataclasses.asdict(getattr(self, g)))
        return out


def fields() -> dict[str, tuple[str, dataclasses.Field, Any]]:
    """key -> (group, field, resolved type annotation); built once per state of the method
    registry (every flag, YAML key and override is checked against it)."""
    global _fields
    method_group = method_args_class()
    if _fields is not None and _fields[0] is method_group:
        return _fields[1]
    idx: dict[str, tuple[str, dataclasses.Field, Any]] = {}
    for g, cls in groups().items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in idx:
                raise ValueError(
                    f"config key {f.name!r} is defined twice (groups {idx[f.name][0]} and {g})"
                )
            idx[f.name] = (g, f, hints[f.name])
    _fields = (method_group, idx)
    return idx


def base_type(tp: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``float`` -> (float, False)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return inner[0], True
    return tp, False


def coerce(key: str, value: Any, source: str) -> Any:
    """Check and convert one value for ``key``; raise ConfigError naming key and value."""
    known = fields()
    if key not in known:
        raise ConfigError(
            f"{source}: unknown key '{key}' (value {value!r}); "
            f"known keys: {', '.join(sorted(known))}"
        )
    tp, optional = base_type(known[key][2])
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: key '{key}' cannot be null")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{source}: key '{key}' expects {tp.__name__}, got {value!r}")


def read_mapping(path: str | Path, what: str = "config file") -> dict[Any, Any]:
    """A YAML file's top-level mapping ({} when empty); missing file, bad YAML (with its line)
    or another shape is a ConfigError naming the file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: {what} not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of key: value, got {type(raw).__name__}")
    return raw


def from_mapping(raw: dict[Any, Any], source: str) -> dict[str, Any]:
    """Checked, typed values of a flat mapping of settings (a YAML file's, a run's
    ``config.yaml``); keys may use '-' or '_'. Unknown keys are errors naming ``source``."""
    return {
        str(k).replace("-", "_"): coerce(str(k).replace("-", "_"), v, source)
        for k, v in raw.items()
    }


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a flat YAML config; keys may use '-' or '_'. Unknown keys are errors."""
    return from_mapping(read_mapping(path), str(path))


def build(overrides: dict[str, Any], config_file: str | None = None) -> RunConfig:
    """Defaults, then (with ``continue_from``) the continued run's settings, then the YAML
    file, then ``overrides`` (already-typed CLI values)."""
    values: dict[str, Any] = {}
    if config_file:
        values.update(load_yaml(config_file))
    for k, v in overrides.items():
        values[k] = coerce(k, v, "command line")
    if values.get("continue_from"):  # the continued run's settings, under the given ones
        values = {**inherited(values["continue_from"], load_yaml), **values}
    cfg = RunConfig()
    known = fields()
    for k, v in values.items():
        setattr(getattr(cfg, known[k][0]), k, v)
    return cfg


def validate(cfg: RunConfig) -> None:
    """The range and choice each field declares (``check=``, ``choices=`` in its metadata, which
    the studio's forms read too), then each method's own options (``methods.check_options``)."""
    from tunelab.methods import METHODS, check_options, field_problem

    for key, (group, f, _) in fields().items():
        value = getattr(getattr(cfg, group), key)
        why = None if value is None else field_problem(f, value)
        if why:
            raise ConfigError(f"key '{key}' = {value!r} {why}")
    r = cfg.regularisation
    if r.augment == "mlm" and not r.augment_mlm_model:
        raise ConfigError(
            f"key 'augment_mlm_model' = {r.augment_mlm_model!r} is required by --augment mlm"
        )
    values = dataclasses.asdict(cfg.method)
    for method in METHODS.values():  # every method's option ranges, as the flags are shared
        if method.options is not None:
            check_options(method.make_options(values))


def read_policy(cfg: RunConfig) -> ReadPolicy:
    """The data readers' policy of a run's settings."""
    return ReadPolicy(cfg.data.max_field_chars, cfg.data.drop_missing)


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.flat(), sort_keys=False, allow_unicode=True)
