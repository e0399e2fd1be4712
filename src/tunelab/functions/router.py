"""Task routing: a plain-language request -> the task function that serves it.

    >>> from tunelab.functions.router import route
    >>> route("is this review positive or negative? the battery died after two days")
    Routed(function='analyze_sentiment', confidence=0.97, arguments={'text': 'the battery
    died after two days'}, result=Label(label='negative', score=0.98), candidates=[...])

The router is an ordinary tunelab text classifier whose labels are function names, trained on
example requests (those shipped in ``route_data/`` are English and Chinese; ``tunelab
route-train``) and registered as ``route``. Its top probability is the routing confidence; below the
threshold nothing is called and the candidates are returned instead of a guess.

The labels are not a fixed list: they are the task functions in the catalog that bring
example requests (``TaskFunction.route_examples``), plus ``none``; :func:`route_dataset`
assembles the training requests for exactly those, so a function registered in one line is
routed once the router is retrained. Each function fills its own arguments from the request
(:func:`fill_arguments` dispatches; the built-in rules are in
:mod:`tunelab.functions.arguments`: the text a request is about is what it quotes or what
follows its first colon, else the whole request; a question is the sentence that ends in a
question mark, and its context is the rest).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.files import atomic_writer
from tunelab.functions import FUNCTIONS

# the argument rules, also importable from here (explicit re-export)
from tunelab.functions.arguments import payload as payload
from tunelab.functions.arguments import question_and_context as question_and_context
from tunelab.functions.catalog import ROUTE_DATA, TaskFunction, get_function, task_functions
from tunelab.functions.registry import model_for, read_registry

DATA = ROUTE_DATA  # the shipped requests: train.csv, validation.csv, test.csv
SPLITS = ("train", "validation", "test")
ROUTER = "route"  # its registry name
NONE = "none"  # the router's label for requests no task function serves
DEFAULT_THRESHOLD = 0.5


@dataclass
class Routed:
    """What the router decided. ``function`` is None when nothing was called: the router was
    unsure, or the request is not one for a task function (``out_of_scope``); ``candidates``
    are (label, probability) pairs, most likely first."""

    request: str
    function: str | None
    confidence: float
    candidates: list[tuple[str, float]]
    arguments: dict[str, Any] = field(default_factory=dict)
    result: Any = None

    @property
    def unsure(self) -> bool:
        return self.function is None

    @property
    def out_of_scope(self) -> bool:
        return self.unsure and self.candidates[0][0] == NONE


def fill_arguments(function: str, request: str) -> dict[str, Any]:
    """The arguments for ``function`` taken from ``request``, by the function's own rule
    (``TaskFunction.fill_arguments``; the built-in rules are in
    :mod:`tunelab.functions.arguments`)."""
    fn = get_function(function)
    if fn is None:
        raise TunelabError(
            f"the router chose {function!r}, which is not a task function; "
            "was the router trained on other labels?"
        )
    return fn.arguments(request)


def router_model(folder: str | None = None):
    """The router: ``folder`` if given, else the model registered as ``route``."""
    if folder is not None:
        import tunelab

        model = tunelab.load(folder)
    elif ROUTER not in read_registry():
        raise TunelabError(
            "no router registered; train it on the shipped example requests "
            "and register it: tunelab route-train --output-dir runs/router"
        )
    else:
        model = model_for(ROUTER, "text-classification")
    unknown = [x for x in model.labels if get_function(x) is None and x != NONE]
    if model.task_name != "text-classification" or unknown:
        raise TunelabError(
            f"{folder or ROUTER}: not a router (its labels must be task "
            f"functions; found {', '.join(unknown) or model.task_name})"
        )
    return model


def plan(
    requests: list[str], threshold: float = DEFAULT_THRESHOLD, folder: str | None = None
) -> list[Routed]:
    """Route without calling: the function, confidence, candidates and filled arguments
    (no function when the top label is ``none`` or its probability is under ``threshold``)."""
    model = router_model(folder)
    out = []
    for request, p in zip(requests, model.predict(list(requests)), strict=True):
        ranked = sorted(
            ((k, float(v)) for k, v in p["probabilities"].items()), key=lambda kv: -kv[1]
        )
        best, conf = ranked[0]
        if conf < threshold or best == NONE:
            out.append(Routed(request, None, conf, ranked[:3]))
        else:
            out.append(Routed(request, best, conf, ranked[:3], fill_arguments(best, request)))
    return out


def route(request: str, threshold: float = DEFAULT_THRESHOLD, folder: str | None = None) -> Routed:
    """Pick the function for ``request``, fill its arguments and call it; when the top
    probability is under ``threshold``, or the router says no function fits, call nothing
    and return the candidates."""
    r = plan([request], threshold, folder)[0]
    if r.function is not None:  # i.e. not r.unsure
        r.result = FUNCTIONS[r.function](**r.arguments)
    return r


def evaluate(
    folder: str | None = None, path: Path | None = None, threshold: float = DEFAULT_THRESHOLD
) -> dict:
    """Routing accuracy on the held-out requests (``route_data/test.csv``), per language;
    also how often the router is unsure at ``threshold`` and how accurate it is otherwise."""
    import csv

    rows = list(csv.DictReader(open(path or DATA / "test.csv", encoding="utf-8")))
    routed = plan([r["text"] for r in rows], threshold, folder)
    report: dict[str, dict] = {}
    for lang in sorted({r["lang"] for r in rows}) + ["all"]:
        pairs = [(r, x) for r, x in zip(rows, routed, strict=True) if lang in ("all", r["lang"])]
        right = sum(x.candidates[0][0] == r["label"] for r, x in pairs)  # none counts too
        sure = [(r, x) for r, x in pairs if not x.unsure]
        report[lang] = {
            "requests": len(pairs),
            "accuracy": right / len(pairs),
            "unsure_rate": 1 - len(sure) / len(pairs),
            "accuracy_when_sure": (sum(x.function == r["label"] for r, x in sure) / len(sure))
            if sure
            else None,
        }
    declined = [x.unsure for r, x in zip(rows, routed, strict=True) if r["label"] == NONE]
    if declined:
        report["out_of_scope"] = {
            "requests": len(declined),
            "declined": sum(declined) / len(declined),
        }
    return {"threshold": threshold, **report}


# --- the router's labels and training requests, from the catalog ----------------------
def route_labels() -> list[str]:
    """The router's label set: every registered task function that brings example requests
    (in registration order), then ``none``."""
    return [f.name for f in task_functions() if f.route_examples is not None] + [NONE]


def route_rows() -> dict[str, list[dict[str, str]]]:
    """The router's requests per split (train, validation, test), rows of text, label, lang.

    Folders of labelled requests (the shipped ``route_data/``) give the rows labelled with a
    function that names the folder, in file order (so with only the built-in functions the
    result is the shipped files themselves; a folder's ``written.csv``, hand-written
    requests, joins its training split), and the shipped ``none`` rows; then each
    function's own CSV is appended, in registration order.
    """
    out: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
    keep: dict[Path, set[str]] = {ROUTE_DATA: {NONE}}  # out-of-scope requests always
    routed = [f for f in task_functions() if f.route_examples is not None]
    for f in routed:
        assert f.route_examples is not None  # routed: the functions with example requests
        if f.route_examples.is_dir():
            keep.setdefault(f.route_examples, set()).add(f.name)
    for folder, labels in keep.items():
        for split in SPLITS:
            paths = [folder / f"{split}.csv"]
            written = folder / "written.csv"  # hand-written requests: training only
            if split == "train" and written.is_file():
                paths.append(written)
            for path in paths:
                with open(path, encoding="utf-8", newline="") as fh:
                    out[split] += [
                        {"text": r["text"], "label": r["label"], "lang": r["lang"]}
                        for r in csv.DictReader(fh)
                        if r["label"] in labels
                    ]
    for f in routed:
        assert f.route_examples is not None
        if not f.route_examples.is_dir():
            for split, row in _own_examples(f):
                out[split].append(row)
    return out


def route_dataset(out_dir: str | os.PathLike) -> Path:
    """Write the router's training requests for the functions registered now:
    ``train.csv``, ``validation.csv`` and ``test.csv`` (columns text, label, lang) in
    ``out_dir``, which ``tunelab route-train`` then trains on.

    Args:
        out_dir: folder to write into (created; the three files are replaced atomically).
    Returns:
        ``out_dir`` as a Path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in route_rows().items():
        with atomic_writer(out / f"{split}.csv", newline="", what="route data") as fh:
            w = csv.DictWriter(fh, fieldnames=["text", "label", "lang"])
            w.writeheader()
            w.writerows(rows)
    return out


# examples without a split column: of every 7 in a language, 5 train, 1 validation, 1 test,
# so even a short list reaches every split
_CYCLE = ("train", "train", "train", "train", "validation", "train", "test")


def _own_examples(f: TaskFunction) -> list[tuple[str, dict[str, str]]]:
    """(split, row) for the requests in a function's own CSV: columns text and lang, an
    optional split; a label column, if any, must name the function."""
    path = f.route_examples
    assert path is not None  # called for the functions with example requests only
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"text", "lang"} - set(reader.fieldnames or [])
        if missing:
            raise TunelabError(
                f"{path}: example requests need the columns text and lang "
                f"(missing: {', '.join(sorted(missing))})"
            )
        rows = list(reader)
    if not rows:
        raise TunelabError(f"{path}: no example requests for {f.name}")
    seen: dict[str, int] = {}
    out = []
    for line, r in enumerate(rows, start=2):
        text, lang = (r.get("text") or "").strip(), (r.get("lang") or "").strip()
        if not text or not lang:
            raise TunelabError(f"{path}:{line}: empty {'text' if not text else 'lang'}")
        if (r.get("label") or f.name) != f.name:
            raise TunelabError(
                f"{path}:{line}: label {r['label']!r}, but these are the "
                f"example requests of {f.name}"
            )
        split = (r.get("split") or "").strip()
        if not split:
            split = _CYCLE[seen.get(lang, 0) % len(_CYCLE)]
            seen[lang] = seen.get(lang, 0) + 1
        elif split not in SPLITS:
            raise TunelabError(f"{path}:{line}: split {split!r} is not one of {', '.join(SPLITS)}")
        out.append((split, {"text": text, "label": f.name, "lang": lang}))
    return out
