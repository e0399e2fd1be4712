"""The Train form, generated from the registries and the config's own field metadata (a new
task, model alias, method or method option appears on the page with no edit here), and the
checked ``tunelab train`` command a filled-in form stands for.

A form is a flat mapping of config keys, as in a YAML file; it goes through ``config.build`` and
``config.validate`` like the command line, so the page refuses exactly what the CLI refuses,
with the same message. The job then runs that argument list (never a shell string).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from tunelab import config as C
from tunelab.errors import ConfigError

# the form's sections: the keys shown, in order (any other config key may still be sent)
BASICS = ("task", "model", "method", "epochs", "batch_size", "learning_rate", "max_length")
DATA = ("train", "validation", "test", "text_column", "label_column")
SMALL_DATA = (
    "max_train_examples",
    "max_train_examples_per_class",
    "label_smoothing",
    "class_weights",
    "rdrop_alpha",
    "augment",
    "augment_copies",
    "hidden_dropout",
    "early_stopping_patience",
)
MORE = ("eval_steps", "save_steps", "seed", "precision", "lr_scheduler", "warmup_ratio")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# set by the studio, never by the form
RESERVED = ("output_dir", "overwrite", "resume", "resume_from", "progress", "num_processes")


def describe_field(key: str) -> dict:
    """One config key as a form field: type, default, help, and its choices or range."""
    _, f, tp = C.fields()[key]
    base, optional = C.base_type(tp)
    out: dict[str, Any] = {
        "key": key,
        "type": base.__name__,
        "optional": optional,
        "default": f.default,
        "help": f.metadata.get("help", ""),
    }
    if "choices" in f.metadata:
        out["choices"] = list(f.metadata["choices"])
    if f.metadata.get("why"):
        out["range"] = f.metadata["why"]
    return out


def form_schema() -> dict:
    """Everything the Train page draws: tasks, models, methods (each with its options and the
    tasks it supports) and the sections of settings."""
    from tunelab.methods import METHODS
    from tunelab.models.registry import ALIASES
    from tunelab.tasks import TASKS

    return {
        "tasks": [{"name": t.name, "description": t.description} for t in TASKS.values()],
        "models": [
            {"name": a.name, "description": a.description, "languages": a.languages}
            for a in ALIASES.values()
        ],
        "methods": [
            {
                "name": m.name,
                "description": m.description,
                "learning_rate": m.default_learning_rate,
                "tasks": m.tasks(),
                "options": [describe_field(f.name) for f in m.option_fields()],
            }
            for m in METHODS.values()
        ],
        "sections": {
            "basics": [describe_field(k) for k in BASICS],
            "data": [describe_field(k) for k in DATA],
            "small_data": [describe_field(k) for k in SMALL_DATA],
            "more": [describe_field(k) for k in MORE],
        },
    }


def build_command(form: dict[str, Any], runs_dir: str | Path) -> dict:
    """The checked run a form stands for.

    Args:
        form: ``name`` (the run folder's name under ``runs_dir``) and config keys -> values;
            empty values mean the default.
        runs_dir: where run folders go.
    Returns:
        ``argv`` (after ``tunelab``), ``command`` (the line to paste in a terminal), ``yaml``
        (the same settings as a config file), ``output_dir``.
    Raises:
        ConfigError naming the key and value, as the CLI would.
    """
    name = str(form.get("name") or "").strip()
    if not RUN_NAME.match(name):
        raise ConfigError(
            f"key 'name' = {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    values = {
        str(k): v
        for k, v in form.items()
        if k != "name" and v is not None and not (isinstance(v, str) and not v.strip())
    }
    for k in values:
        if k in RESERVED:
            raise ConfigError(f"key '{k}' is set by the studio")
    out = str(Path(runs_dir) / name)
    typed = C.from_mapping(values, "form")  # unknown keys and bad types: named errors
    cfg = C.build({**typed, "output_dir": out})
    C.validate(cfg)
    from tunelab.methods import check_supported, get_method
    from tunelab.tasks import get_task

    check_supported(get_method(cfg.method.method), get_task(cfg.data.task))
    if not cfg.data.train or not cfg.data.validation:
        raise ConfigError("key 'train' and key 'validation' are required: pick the data first")
    argv = ["train"]
    for k, v in typed.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            argv += [flag, str(v)]
    argv += ["--output-dir", out, "--no-progress"]
    settings = {**typed, "output_dir": out}
    return {
        "argv": argv,
        "command": "tunelab " + " ".join(shlex.quote(a) for a in argv),
        "yaml": yaml.safe_dump(settings, sort_keys=False, allow_unicode=True),
        "output_dir": out,
    }
