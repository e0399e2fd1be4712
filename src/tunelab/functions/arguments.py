"""How a plain-language request becomes a task function's arguments: pure rules, no model.

Each task function owns its rule (``TaskFunction.fill_arguments``, see
:mod:`tunelab.functions.catalog`); the router only dispatches to it. The rules live here,
apart from the router, so that the functions can name their rule when they register without
importing the router (which imports them).

    text functions (analyze_sentiment, classify, score, extract_entities): ``text`` =
        :func:`payload`, what the request is about;
    answer: ``question`` and ``context`` from :func:`question_and_context`;
    generate: ``prompt`` = the whole request (the instruction is the prompt).
"""

from __future__ import annotations

import re
from typing import Any

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
    before, after = request[: m.start()], request[m.end() :]
    question = _QUESTION_LABEL.sub("", m.group(0)).strip(" ,，")
    if not (before + after).strip():  # "given that <context>, <question>?"
        tail = _TAIL_QUESTION.match(request.strip())
        if tail:
            before, question = tail.group(1), tail.group(2).strip()
    rest = _QUESTION_LABEL.sub("", before + " " + after).strip()
    context = _LABEL.sub("", payload(rest)) if rest else ""
    context = re.sub(r"\s+", " ", context).strip(" ,，.。-—()（）")
    return question or request.strip(), context or request.strip()


def text_argument(request: str) -> dict[str, Any]:
    """``{"text": payload(request)}``: for functions that judge the text a request is about."""
    return {"text": payload(request)}


def question_arguments(request: str) -> dict[str, Any]:
    """``{"question", "context"}`` from :func:`question_and_context` (answer)."""
    q, c = question_and_context(request)
    return {"question": q, "context": c}


def prompt_argument(request: str) -> dict[str, Any]:
    """``{"prompt": request}``: the instruction itself is the prompt (generate)."""
    return {"prompt": request.strip()}
