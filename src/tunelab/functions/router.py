"""Task routing: a plain-language request -> the task function that serves it.

    >>> from tunelab.functions.router import route
    >>> route("is this review positive or negative? the battery died after two days")
    Routed(function='analyze_sentiment', confidence=0.97, arguments={'text': 'the battery
    died after two days'}, result=Sentiment(label='negative', score=0.98), candidates=[...])

The router is an ordinary tunelab text classifier whose labels are function names, trained on
the example requests shipped in ``route_data/`` (English and Chinese; ``tunelab route-train``)
and registered as ``route``. Its top probability is the routing confidence; below the
threshold nothing is called and the candidates are returned instead of a guess.

Arguments are filled by rules, documented in :func:`fill_arguments`: the text a request is
about is what follows its first colon, or what it quotes, else the whole request; a question
is the sentence that ends in a question mark, and its context is the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.functions import FUNCTIONS
from tunelab.functions.registry import model_for, read_registry

DATA = Path(__file__).with_name("route_data")  # train.csv, validation.csv, test.csv
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


_QUOTES = re.compile(r"[\"“「『](.{4,}?)[\"”」』]", re.S)
_SEPARATOR = re.compile(r"[:：]\s*|\s*——\s*|\s+--?\s+")
_ASKED = re.compile(r"^[^?？]{3,80}[?？]\s*(.+)$", re.S)  # "is it positive? <text>"
# labels a request may put in front of its parts ("question: ... context: ...")
_LABEL = re.compile(r"^\w{1,12}\s*[:：]\s*")  # "原文：", "context:" left at the start
_TAIL_QUESTION = re.compile(r"^(.*)(?:[,，)）]|\s--?\s)\s*([^,，)）]+[?？])$", re.S)
_QUESTION_LABEL = re.compile(r"(?i)(question|问题)\s*[:：]\s*")
_QUESTION = re.compile(r"[^.!?。！？:：—\"“”]*[?？]")


def payload(request: str) -> str:
    """The text a request is about: a quoted part, else what follows its first colon (or
    dash), else what follows a leading question ("is this positive? <text>"), else the whole
    request."""
    q = _QUOTES.search(request)
    if q:
        return q.group(1).strip()
    parts = _SEPARATOR.split(request, maxsplit=1)
    if len(parts) == 2 and parts[1].strip():
        return parts[1].strip()
    asked = _ASKED.match(request.strip())
    if asked:
        return asked.group(1).strip()
    return request.strip()


def question_and_context(request: str) -> tuple[str, str]:
    """Split a request into a question (the last stretch ending in ``?``/``？``) and its
    context (the :func:`payload` of the rest); no question mark: the whole request is
    both."""
    found = list(_QUESTION.finditer(request))
    if not found:
        text = request.strip()
        return text, text
    m = found[-1]
    before, after = request[:m.start()], request[m.end():]
    question = _QUESTION_LABEL.sub("", m.group(0)).strip(" ,，")
    if not (before + after).strip():  # "given that <context>, <question>?"
        tail = _TAIL_QUESTION.match(request.strip())
        if tail:
            before, question = tail.group(1), tail.group(2).strip()
    rest = _QUESTION_LABEL.sub("", before + " " + after).strip()
    context = _LABEL.sub("", payload(rest)) if rest else ""
    context = re.sub(r"\s+", " ", context).strip(" ,，.。-—()（）")
    return question or request.strip(), context or request.strip()


def fill_arguments(function: str, request: str) -> dict[str, Any]:
    """The arguments for ``function`` taken from ``request``.

    analyze_sentiment, classify, score, extract_entities: ``text`` = :func:`payload`;
    answer: ``question`` and ``context`` from :func:`question_and_context`;
    generate: ``prompt`` = the whole request (the instruction is the prompt).
    """
    if function == "answer":
        q, c = question_and_context(request)
        return {"question": q, "context": c}
    if function == "generate":
        return {"prompt": request.strip()}
    if function not in FUNCTIONS:
        raise TunelabError(f"the router chose {function!r}, which is not a task function; "
                           "was the router trained on other labels?")
    return {"text": payload(request)}


def router_model(folder: str | None = None):
    """The router: ``folder`` if given, else the model registered as ``route``."""
    if folder is not None:
        import tunelab

        model = tunelab.load(folder)
    elif ROUTER not in read_registry():
        raise TunelabError("no router registered; train it on the shipped example requests "
                           "and register it: tunelab route-train --output-dir runs/router")
    else:
        model = model_for(ROUTER, "text-classification")
    unknown = [x for x in model.labels if x not in FUNCTIONS and x != NONE]
    if model.task_name != "text-classification" or unknown:
        raise TunelabError(f"{folder or ROUTER}: not a router (its labels must be task "
                           f"functions; found {', '.join(unknown) or model.task_name})")
    return model


def plan(requests: list[str], threshold: float = DEFAULT_THRESHOLD,
         folder: str | None = None) -> list[Routed]:
    """Route without calling: the function, confidence, candidates and filled arguments
    (no function when the top label is ``none`` or its probability is under ``threshold``)."""
    model = router_model(folder)
    out = []
    for request, p in zip(requests, model.predict(list(requests))):
        ranked = sorted(((k, float(v)) for k, v in p["probabilities"].items()),
                        key=lambda kv: -kv[1])
        best, conf = ranked[0]
        if conf < threshold or best == NONE:
            out.append(Routed(request, None, conf, ranked[:3]))
        else:
            out.append(Routed(request, best, conf, ranked[:3], fill_arguments(best, request)))
    return out


def route(request: str, threshold: float = DEFAULT_THRESHOLD,
          folder: str | None = None) -> Routed:
    """Pick the function for ``request``, fill its arguments and call it; when the top
    probability is under ``threshold``, or the router says no function fits, call nothing
    and return the candidates."""
    r = plan([request], threshold, folder)[0]
    if not r.unsure:
        r.result = FUNCTIONS[r.function](**r.arguments)
    return r


def evaluate(folder: str | None = None, path: Path | None = None,
             threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Routing accuracy on the held-out requests (``route_data/test.csv``), per language;
    also how often the router is unsure at ``threshold`` and how accurate it is otherwise."""
    import csv

    rows = list(csv.DictReader(open(path or DATA / "test.csv", encoding="utf-8")))
    routed = plan([r["text"] for r in rows], threshold, folder)
    report: dict[str, dict] = {}
    for lang in sorted({r["lang"] for r in rows}) + ["all"]:
        pairs = [(r, x) for r, x in zip(rows, routed) if lang in ("all", r["lang"])]
        right = sum(x.candidates[0][0] == r["label"] for r, x in pairs)  # none counts too
        sure = [(r, x) for r, x in pairs if not x.unsure]
        report[lang] = {"requests": len(pairs), "accuracy": right / len(pairs),
                        "unsure_rate": 1 - len(sure) / len(pairs),
                        "accuracy_when_sure": (sum(x.function == r["label"] for r, x in sure)
                                               / len(sure)) if sure else None}
    declined = [x.unsure for r, x in zip(rows, routed) if r["label"] == NONE]
    if declined:
        report["out_of_scope"] = {"requests": len(declined),
                                  "declined": sum(declined) / len(declined)}
    return {"threshold": threshold, **report}
