"""``answer_faq``: the assistant as a typed task function, backed by a knowledge base folder
(a new folder kind, ``kb``) in the function registry, and routed by ``tunelab chat``:

    tunelab assistant build --faq data/faq/python_faq.jsonl --output runs/kb-python
    tunelab register answer_faq runs/kb-python
    >>> from tunelab.assistant.function import answer_faq
    >>> answer_faq("does python have a switch statement")
    FaqAnswer(answer='You can do this easily enough ...', matched_question="Why isn't there ...",
              score=0.93, handoff=False, ticket=None)

A question it hands off becomes a ticket in the KB's tickets database, as with the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.functions.catalog import TaskFunction, register_folder_kind, register_function
from tunelab.functions.registry import model_for

ROUTE_EXAMPLES = Path(__file__).with_name("route_examples.csv")


@dataclass(frozen=True)
class FaqAnswer:
    """The assistant's answer, or its hand-off to a human (``handoff``, ``ticket``)."""

    answer: str
    matched_question: str | None
    score: float
    handoff: bool
    ticket: int | None = None


def _open(folder: str):
    from tunelab.assistant.assistant import Assistant
    from tunelab.assistant.cli import tickets_db
    from tunelab.assistant.kb import KnowledgeBase
    from tunelab.store.db import open_store

    return Assistant(
        KnowledgeBase.load(folder), open_store(tickets_db(folder, None)), Path(folder).name
    )


def _describe(folder: str) -> str:
    from tunelab.assistant.kb import KnowledgeBase

    KnowledgeBase.load_info(folder)  # a clear error for a folder that is not a KB
    return "knowledge-base"


def _hint(name: str, task: str | None) -> str:
    return (
        "build a knowledge base and register it: tunelab assistant build --faq FAQ.csv "
        f"--output runs/kb && tunelab register {name} runs/kb"
    )


def answer_faq(question: str | list[str]) -> FaqAnswer | list[FaqAnswer]:
    """Answer a customer's question from the FAQ and documents of the registered knowledge base,
    or hand it to a human when unsure.

    Args:
        question: the customer's question, or a list of questions.
    """
    bot = model_for("answer_faq", "knowledge-base")
    qs = question if isinstance(question, list) else [question]
    out = []
    for q in qs:
        r = bot.ask(q)
        out.append(
            FaqAnswer(r["answer"], r["matched_question"], r["score"], r["handoff"], r.get("ticket"))
        )
    return out if isinstance(question, list) else out[0]


register_folder_kind("kb", _open, _describe, _hint)
register_function(
    TaskFunction(
        "answer_faq",
        answer_faq,
        folder_kind="kb",
        task="knowledge-base",
        route_examples=ROUTE_EXAMPLES if ROUTE_EXAMPLES.is_file() else None,
    )
)
