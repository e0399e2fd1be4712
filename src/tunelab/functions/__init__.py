"""Typed functions backed by fine-tuned models: call them, do not think about run folders.

    >>> from tunelab.functions import analyze_sentiment, extract_entities
    >>> analyze_sentiment("the battery died after a day")
    Label(label='negative', score=0.97)

Each function finds its model through the registry (``tunelab register NAME FOLDER``, see
:mod:`tunelab.functions.registry`), loads it once, and is safe to call from many threads.
A list in gives a list out. ``tunelab functions --schema`` prints these signatures as JSON
Schema tool definitions, generated from the code below.

Every function is declared once, at the bottom, in the catalog
(:mod:`tunelab.functions.catalog`); ``FUNCTIONS``, the CLI, the HTTP endpoint, the schemas
and the router all read it there, so a function added with ``register_function`` (here or in
another package) shows up everywhere with no other edit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from tunelab.functions.arguments import prompt_argument, question_arguments, text_argument
from tunelab.functions.catalog import (
    FUNCTIONS,
    ROUTE_DATA,
    FolderKind,
    TaskFunction,
    register_folder_kind,
    register_function,
    task_functions,
    unregister_function,
)
from tunelab.functions.registry import model_for


@dataclass(frozen=True)
class Label:
    """A predicted label and the model's confidence in it (classify, analyze_sentiment)."""

    label: str
    score: float


Sentiment = Label  # analyze_sentiment's result: the same shape, kept as a name for old code


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Answer:
    text: str
    start: int
    end: int
    score: float


def _run(name: str, task: str | None, items: list):
    """Predictions of the model registered as ``name``; ``task`` None: the one the function
    named ``name`` declares (below), so it is written once."""
    return model_for(name, task).predict(items)


def analyze_sentiment(text: str | list[str]) -> Label | list[Label]:
    """Sentiment of a text: its label (e.g. positive or negative) and the model's confidence.

    Args:
        text: the text to judge, or a list of texts.
    """
    out = [
        Label(p["label"], float(p["score"])) for p in _run("analyze_sentiment", None, _listed(text))
    ]
    return out if isinstance(text, list) else out[0]


def classify(text: str | list[str], model: str = "classify") -> Label | list[Label]:
    """Classify a text with a fine-tuned classifier (topic, intent, ...).

    Args:
        text: the text to classify, or a list of texts.
        model: registry name of the classifier to use.
    """
    out = [
        Label(p["label"], float(p["score"]))
        for p in _run(model, "text-classification", _listed(text))
    ]
    return out if isinstance(text, list) else out[0]


def score(text: str | list[str], model: str = "score") -> float | list[float]:
    """A numeric score for a text (e.g. a rating) from a fine-tuned regression model.

    Args:
        text: the text to score, or a list of texts.
        model: registry name of the regression model to use.
    """
    out = [float(p["value"]) for p in _run(model, "regression", _listed(text))]
    return out if isinstance(text, list) else out[0]


def extract_entities(text: str | list[str]) -> list[Entity] | list[list[Entity]]:
    """Named entities in a text, with their type and character offsets.

    Args:
        text: the text to search, or a list of texts.
    """
    out = [
        [
            Entity(e["text"], e["type"], int(e["start"]), int(e["end"]), float(e["score"]))
            for e in p["entities"]
        ]
        for p in _run("extract_entities", None, _listed(text))
    ]
    return out if isinstance(text, list) else out[0]


def answer(question: str, context: str) -> Answer:
    """The span of the context that answers the question.

    Args:
        question: what to ask.
        context: the text that holds the answer.
    """
    p = _run("answer", None, [{"question": question, "context": context}])[0]
    return Answer(p["answer"], int(p["start"]), int(p["end"]), float(p["score"]))


_generate_lock = threading.Lock()


def generate(prompt: str | list[str], max_new_tokens: int = 32) -> str | list[str]:
    """Text generated from a prompt by a fine-tuned generation model.

    Args:
        prompt: the prompt, or a list of prompts.
        max_new_tokens: most tokens to generate.
    """
    m = model_for("generate")
    with _generate_lock:  # the token budget is part of the shared model's spec
        old, m.spec["max_new_tokens"] = m.spec["max_new_tokens"], int(max_new_tokens)
        try:
            out = [p["generated"] for p in m.predict(_listed(prompt))]
        finally:
            m.spec["max_new_tokens"] = old
    return out if isinstance(prompt, list) else out[0]


def as_json(result):
    """A function's result as plain JSON values (dataclasses to dicts, lists kept)."""
    import dataclasses

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    return [as_json(x) for x in result] if isinstance(result, list) else result


def _listed(x) -> list:
    return list(x) if isinstance(x, list) else [x]


# the built-in functions, one line each: backed by runs of their task, routed with the
# shipped example requests (route_data/), each filling its arguments by its own rule
class _Builtin(TypedDict):
    folder_kind: str
    route_examples: Path


_BUILTIN: _Builtin = {"folder_kind": "run", "route_examples": ROUTE_DATA}
register_function(
    TaskFunction(
        "analyze_sentiment",
        analyze_sentiment,
        task="text-classification",
        fill_arguments=text_argument,
        **_BUILTIN,
    )
)
register_function(
    TaskFunction(
        "classify", classify, task="text-classification", fill_arguments=text_argument, **_BUILTIN
    )
)
register_function(
    TaskFunction("score", score, task="regression", fill_arguments=text_argument, **_BUILTIN)
)
register_function(
    TaskFunction(
        "extract_entities",
        extract_entities,
        task="token-classification",
        fill_arguments=text_argument,
        **_BUILTIN,
    )
)
register_function(
    TaskFunction(
        "answer", answer, task="question-answering", fill_arguments=question_arguments, **_BUILTIN
    )
)
register_function(
    TaskFunction(
        "generate", generate, task="generation", fill_arguments=prompt_argument, **_BUILTIN
    )
)

# functions of the systems built on the engine register themselves the same way
from tunelab.assistant import function as _assistant  # noqa: E402, F401  (answer_faq)
from tunelab.music import function as _music  # noqa: E402, F401  (compose_music)

__all__ = [
    "Answer",
    "Entity",
    "FUNCTIONS",
    "FolderKind",
    "Label",
    "ROUTE_DATA",
    "Sentiment",
    "TaskFunction",
    "analyze_sentiment",
    "answer",
    "as_json",
    "classify",
    "extract_entities",
    "generate",
    "register_folder_kind",
    "register_function",
    "score",
    "task_functions",
    "unregister_function",
]
