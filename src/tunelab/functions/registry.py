"""Which folder backs which function: a small ``models.yaml`` registry.

    analyze_sentiment: runs/reviews
    classify: runs/topics          # the default model of classify(); others by name:
    tickets: runs/ticket-intents   # classify(text, model="tickets")

Where it is read from, first found wins: ``$TUNELAB_MODELS`` (a file), ``./models.yaml``,
``~/.config/tunelab/models.yaml``. ``tunelab register NAME FOLDER`` writes it (atomically).
Models load lazily, once per process, under a lock; they are then shared by every thread.
How a folder is checked and loaded is up to its kind (:mod:`tunelab.functions.catalog`): a
run for the built-in functions, whatever kind a function registered elsewhere declares.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import yaml

from tunelab.errors import TunelabError
from tunelab.files import atomic_write_text
from tunelab.functions.catalog import FolderKind, folder_kind, get_function

ENV = "TUNELAB_MODELS"
# registry names that back no task function but still need a certain kind of run
NAMED = {
    "route": "text-classification",  # the router (tunelab route-train)
    "planner": "generation",  # the planner of compound requests (tunelab planner-train)
}

_lock = threading.Lock()
# (name, folder) -> (the loaded object, what its folder holds)
_cache: dict[tuple[str, str], tuple[object, str]] = {}


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
    return {
        str(k): str((p.parent / v) if not Path(v).is_absolute() else Path(v))
        for k, v in data.items()
    }


def requirement(name: str, task: str | None = None) -> tuple[FolderKind, str | None]:
    """The folder kind and task (None: any) that ``name`` needs: a task function's own, the
    router's, else a run (any other name is a classify/score model); ``task`` overrides."""
    fn = get_function(name)
    kind = folder_kind(fn.folder_kind if fn else "run")
    return kind, task or (fn.task if fn else NAMED.get(name))


def _wrong_task(name: str, folder: str, got: str, need: str | None) -> TunelabError:
    return TunelabError(
        f"{name!r} is registered to {folder}, a {got} model; this function needs {need}"
    )


def register(name: str, folder: str, path: Path | None = None) -> Path:
    """Map ``name`` to ``folder`` in the registry; the folder's kind and task must fit the
    function (checked now, from the folder's self-description, without loading it)."""
    kind, need = requirement(name)
    got = kind.describe(folder)  # raises when the folder is not of this kind
    if need and got != need:
        raise TunelabError(f"{folder} is a {got} model; {name} needs a {need} model")
    p = path or registry_path()
    entries: dict = {}
    if p.is_file():
        entries = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    entries[name] = str(Path(folder).resolve())
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        p, yaml.safe_dump(entries, sort_keys=True, allow_unicode=True), what="model registry"
    )
    with _lock:
        _cache.clear()
    return p


def model_for(name: str, task: str | None = None):
    """The loaded object registered under ``name`` (loaded on first use, then shared).

    Args:
        name: a task function, or another registry name (``classify(text, model=NAME)``).
        task: what the caller needs the folder to hold; None: the function's own ``task``.
    Returns:
        what the name's folder kind loads (a run: a ``TunedModel``).
    """
    kind, need = requirement(name, task)
    folder = read_registry().get(name)
    if folder is None:
        fn = get_function(name)
        hint = fn.how_to_get(need) if fn else kind.how_to_get(name, need)
        raise TunelabError(
            f"no model registered for {name!r} (registry: {registry_path()}); {hint}"
        )
    with _lock:
        cached = _cache.get((name, folder))
        if cached is None:
            got = kind.describe(folder)  # raises when the folder is not of this kind
            if need and got != need:  # refused before anything is loaded
                raise _wrong_task(name, folder, got, need)
            cached = _cache[(name, folder)] = (kind.load(folder), got)
    model, got = cached
    if need and got != need:  # loaded earlier for a caller that needed something else
        raise _wrong_task(name, folder, got, need)
    return model
