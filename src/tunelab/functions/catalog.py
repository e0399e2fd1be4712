"""The catalog of task functions and of the kinds of folder that back them.

Everything that lists functions reads this catalog, so nothing is written twice: the Python
names (``FUNCTIONS``), ``tunelab functions`` and ``--schema``, the HTTP endpoint
``/v1/functions/{name}``, ``tunelab register``'s checks, and the router's labels and training
requests. A new function is one line::

    register_function(TaskFunction("lookup", lookup, folder_kind="kb", route_examples=csv))

and a new kind of backing folder (a knowledge base, a music model) is one more::

    register_folder_kind("kb", load=KnowledgeBase.open, describe=lambda d: "knowledge-base")

Duplicate names are rejected (ValueError), as in ``peft.register_peft_method``: a second
registration silently replacing the first would change what an existing name does.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError

# the built-in functions' example requests: train.csv, validation.csv, test.csv with text,
# label, lang columns (tools/make_route_data.py builds them)
ROUTE_DATA = Path(__file__).with_name("route_data")
# names a function cannot take: the router's "nothing fits" label and its registry name
RESERVED = ("none", "route")
# OpenAI function-calling names are [a-zA-Z0-9_-]{1,64}; an identifier also reads in Python
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# what to train for a run of each task (shown when a run-backed function has no model)
TRAIN_HINT = {
    "text-classification": "--task text-classification --train reviews.csv",
    "regression": "--task regression --train ratings.csv --label-column rating",
    "token-classification": "--task token-classification --train ner.jsonl",
    "question-answering": "--task question-answering --train qa.jsonl",
    "generation": "--task generation --train pairs.jsonl",
}


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder a function can be backed by.

    Attributes:
        name: the kind's name (``"run"`` for tunelab run and export folders).
        load: folder -> the object the function uses; called once per process and folder.
        describe: folder -> what it holds, cheaply (no weights loaded), in the words a
            function's ``task`` uses (a run: its task, e.g. ``"text-classification"``); raises
            TunelabError when the folder is not of this kind, so a wrong folder is refused at
            ``tunelab register`` time, not at the first call.
        hint: (name, task) -> what to do when nothing is registered under ``name``.
    """

    name: str
    load: Callable[[str], Any]
    describe: Callable[[str], str]
    hint: Callable[[str, str | None], str] | None = None

    def how_to_get(self, name: str, task: str | None) -> str:
        if self.hint is not None:
            return self.hint(name, task)
        return f"register a {self.name} folder for it: tunelab register {name} FOLDER"


@dataclass(frozen=True)
class TaskFunction:
    """A typed task function and what it needs.

    Attributes:
        name: how it is called everywhere (Python, CLI, HTTP, the router's label).
        func: the callable; its type hints and Google-style docstring become its JSON Schema.
        folder_kind: the kind of folder that backs it (see :func:`register_folder_kind`).
        task: what that folder must hold (:attr:`FolderKind.describe` must return it); None
            accepts any folder of the kind.
        fill_arguments: request -> arguments, for the router; None fills the first required
            parameter with the text the request is about (:func:`arguments.payload`).
        route_examples: example requests the router learns this function from: a CSV with
            ``text`` and ``lang`` columns (optional ``split``: train/validation/test), or a
            folder of labelled train/validation/test CSVs holding rows labelled with this
            name (the shipped ``route_data/``); None keeps it out of the router.
        train_hint: what to do when no folder is registered for it (``{name}`` is filled in);
            None asks the folder kind (a run: the ``tunelab train`` command for its task).
    """

    name: str
    func: Callable[..., Any]
    folder_kind: str = "run"
    task: str | None = None
    fill_arguments: Callable[[str], dict[str, Any]] | None = None
    route_examples: Path | None = None
    train_hint: str | None = None

    def __post_init__(self) -> None:
        if self.route_examples is not None:  # a str is accepted and kept as a Path
            object.__setattr__(self, "route_examples", Path(self.route_examples))

    def arguments(self, request: str) -> dict[str, Any]:
        """The arguments for this function taken from a plain-language ``request``."""
        if self.fill_arguments is not None:
            return self.fill_arguments(request)
        from tunelab.functions.arguments import payload

        required = [
            k
            for k, p in inspect.signature(self.func).parameters.items()
            if p.default is inspect.Parameter.empty
        ]
        return {required[0]: payload(request)} if required else {}

    def how_to_get(self, task: str | None = None) -> str:
        """What to do when nothing is registered for it (for the 'no model' error)."""
        if self.train_hint is not None:
            return self.train_hint.format(name=self.name)
        return folder_kind(self.folder_kind).how_to_get(self.name, task or self.task)


_lock = threading.Lock()
_kinds: dict[str, FolderKind] = {}
_functions: dict[str, TaskFunction] = {}  # registration order is listing order


def register_folder_kind(
    kind: str,
    load: Callable[[str], Any],
    describe: Callable[[str], str],
    hint: Callable[[str, str | None], str] | None = None,
) -> FolderKind:
    """Add a kind of backing folder; see :class:`FolderKind`. A taken name is a ValueError."""
    k = FolderKind(kind, load, describe, hint)
    with _lock:
        if kind in _kinds:
            raise ValueError(f"folder kind {kind!r} is already registered")
        _kinds[kind] = k
    return k


def unregister_folder_kind(kind: str) -> None:
    """Remove a folder kind no function uses any more (plugins that unload, tests)."""
    with _lock:
        users = [f.name for f in _functions.values() if f.folder_kind == kind]
        if users:
            raise ValueError(f"folder kind {kind!r} still backs {', '.join(users)}")
        _kinds.pop(kind, None)


def folder_kind(kind: str) -> FolderKind:
    """The registered folder kind ``kind``."""
    try:
        return _kinds[kind]
    except KeyError:
        raise TunelabError(
            f"unknown folder kind {kind!r} (registered: {', '.join(_kinds)})"
        ) from None


def register_function(fn: TaskFunction) -> TaskFunction:
    """Add a task function; it then appears in ``FUNCTIONS``, ``tunelab functions``, the
    tool schemas, the HTTP endpoint and (with ``route_examples``) the router's labels.

    Raises:
        ValueError: the name is taken, reserved or not a valid function name, its folder
            kind is not registered, its examples do not exist, or its signature cannot be
            expressed as a JSON Schema tool (caught here rather than in an agent's request).
    """
    from tunelab.functions.toolspec import tool_spec

    if not _NAME.match(fn.name) or fn.name in RESERVED:
        raise ValueError(
            f"{fn.name!r} cannot name a task function (letters, digits and _, "
            f"at most 64; not {' or '.join(RESERVED)})"
        )
    if not callable(fn.func):
        raise ValueError(f"task function {fn.name!r}: {fn.func!r} is not callable")
    if fn.folder_kind not in _kinds:
        raise ValueError(
            f"task function {fn.name!r}: unknown folder kind {fn.folder_kind!r} "
            f"(registered: {', '.join(_kinds)}); register_folder_kind first"
        )
    ex = fn.route_examples
    if ex is not None and not all(f.is_file() for f in _example_files(ex)):
        raise ValueError(
            f"task function {fn.name!r}: route_examples {ex} is not a CSV file "
            "or a folder with train.csv, validation.csv and test.csv"
        )
    try:
        tool_spec(fn.func, fn.name)
    except (TypeError, KeyError, NameError) as e:
        raise ValueError(
            f"task function {fn.name!r}: its parameters need type hints a JSON "
            f"Schema can express ({e})"
        ) from None
    with _lock:
        if fn.name in _functions:
            raise ValueError(f"task function {fn.name!r} is already registered")
        _functions[fn.name] = fn
    return fn


def _example_files(ex: Path) -> list[Path]:
    """The files a ``route_examples`` path stands for: a folder's three splits, or the CSV."""
    return [ex / f"{s}.csv" for s in ("train", "validation", "test")] if ex.is_dir() else [ex]


def unregister_function(name: str) -> TaskFunction:
    """Remove a task function (a deployment that does not offer it, tests)."""
    with _lock:
        try:
            return _functions.pop(name)
        except KeyError:
            raise KeyError(f"no task function {name!r} is registered") from None


def get_function(name: str) -> TaskFunction | None:
    """The registered task function ``name``, or None."""
    return _functions.get(name)


def task_functions() -> list[TaskFunction]:
    """Every registered task function, in registration order."""
    return list(_functions.values())


def text_functions() -> list[TaskFunction]:
    """The task functions a plan can call over texts: those whose first parameter is required
    (the text). ``compose_music(mood, key, ...)`` takes no text: the router calls it, plans
    do not."""
    out = []
    for f in task_functions():
        params = list(inspect.signature(f.func).parameters.values())
        if params and params[0].default is inspect.Parameter.empty:
            out.append(f)
    return out


class _FunctionTable(MutableMapping):
    """``FUNCTIONS``: name -> callable, a live view of the catalog (never a second list).

    Setting an existing name swaps its callable and keeps the rest of its declaration (what
    ``monkeypatch.setitem`` in a test does); setting a new name registers a run-backed
    function with the defaults; deleting unregisters."""

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return _functions[name].func

    def __setitem__(self, name: str, func: Callable[..., Any]) -> None:
        with _lock:
            old = _functions.get(name)
            if old is not None:
                _functions[name] = dataclasses.replace(old, func=func)
                return
        register_function(TaskFunction(name, func))

    def __delitem__(self, name: str) -> None:
        unregister_function(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_functions))

    def __len__(self) -> int:
        return len(_functions)

    def __repr__(self) -> str:
        return f"FUNCTIONS({', '.join(_functions)})"


FUNCTIONS: MutableMapping[str, Callable[..., Any]] = _FunctionTable()


# --- the built-in kind: tunelab run and export folders -------------------------------
def _describe_run(folder: str) -> str:
    from tunelab.runs import read_run

    return read_run(folder).task


def _load_run(folder: str) -> Any:
    import tunelab  # looked up per call: tests count tunelab.load calls

    return tunelab.load(folder)


def _run_hint(name: str, task: str | None) -> str:
    what = TRAIN_HINT.get(task or "", "--task TASK --train FILE")
    return (
        f"train and register one: tunelab train {what} --output-dir runs/{name} && "
        f"tunelab register {name} runs/{name}"
    )


register_folder_kind("run", load=_load_run, describe=_describe_run, hint=_run_hint)
