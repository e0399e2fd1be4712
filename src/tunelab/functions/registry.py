"""Which model folder backs which function: a small ``models.yaml`` registry.

    analyze_sentiment: runs/reviews
    classify: runs/topics          # the default model of classify(); others by name:
    tickets: runs/ticket-intents   # classify(text, model="tickets")

Where it is read from, first found wins: ``$TUNELAB_MODELS`` (a file), ``./models.yaml``,
``~/.config/tunelab/models.yaml``. ``tunelab register NAME FOLDER`` writes it (atomically).
Models load lazily, once per process, under a lock; they are then shared by every thread.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml

from tunelab.errors import TunelabError

ENV = "TUNELAB_MODELS"
# the task each built-in function needs; any other registry name is a classify/score model
TASK_OF = {"analyze_sentiment": "text-classification", "classify": "text-classification",
           "score": "regression", "extract_entities": "token-classification",
           "answer": "question-answering", "generate": "generation",
           "route": "text-classification"}  # the router (tunelab route-train)
TRAIN_HINT = {"text-classification": "--task text-classification --train reviews.csv",
              "regression": "--task regression --train ratings.csv --label-column rating",
              "token-classification": "--task token-classification --train ner.jsonl",
              "question-answering": "--task question-answering --train qa.jsonl",
              "generation": "--task generation --train pairs.jsonl"}

_lock = threading.Lock()
_cache: dict[tuple[str, str], object] = {}


def registry_path() -> Path:
    """The registry file in use (it may not exist yet)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    for p in (Path("models.yaml"), Path.home() / ".config" / "tunelab" / "models.yaml"):
        if p.is_file():
            return p
    return Path("models.yaml")


def read_registry(path: Path | None = None) -> dict[str, str]:
    p = path or registry_path()
    if not p.is_file():
        return {}
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise TunelabError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise TunelabError(f"{p}: expected 'name: model folder' lines")
    # relative folders are relative to the registry file
    return {str(k): str((p.parent / v) if not Path(v).is_absolute() else Path(v))
            for k, v in data.items()}


def register(name: str, folder: str, path: Path | None = None) -> Path:
    """Map ``name`` to ``folder`` in the registry; the folder's task must fit the function."""
    from tunelab.runs import read_run

    info = read_run(folder)
    need = TASK_OF.get(name)
    if need and info["task"] != need:
        raise TunelabError(f"{folder} is a {info['task']} model; {name} needs a {need} model")
    p = path or registry_path()
    entries = {}
    if p.is_file():
        entries = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    entries[name] = str(Path(folder).resolve())
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(yaml.safe_dump(entries, sort_keys=True, allow_unicode=True), encoding="utf-8")
    os.replace(tmp, p)
    with _lock:
        _cache.clear()
    return p


def model_for(name: str, task: str):
    """The loaded model registered under ``name`` (loaded on first use, then shared)."""
    folder = read_registry().get(name)
    if folder is None:
        raise TunelabError(
            f"no model registered for {name!r} (registry: {registry_path()}); train and "
            f"register one: tunelab train {TRAIN_HINT[task]} --output-dir runs/{name} && "
            f"tunelab register {name} runs/{name}")
    key = (name, folder)
    with _lock:
        if key not in _cache:
            import tunelab

            m = tunelab.load(folder)
            if m.task_name != task:
                raise TunelabError(f"{name!r} is registered to {folder}, a {m.task_name} "
                                   f"model; this function needs {task}")
            _cache[key] = m
        return _cache[key]
