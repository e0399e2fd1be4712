"""The request and response bodies of the HTTP API, as pydantic models (the OpenAPI schema).

Each served model gets its own predict operation whose body says exactly what that model
takes (texts, or {question, context} objects) and how long a text may be, so a request the
schema accepts is one the server accepts.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
)


def unicode_text(value: str) -> str:
    """Refuse text that is not valid Unicode (a lone UTF-16 surrogate such as ``\\ud800``, which
    JSON can carry but no tokenizer can read), before it can join a shared batch."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"character {e.start} is a lone UTF-16 surrogate (U+{ord(value[e.start]):04X}); "
            "send valid Unicode text"
        ) from None
    return value


def text_type(max_chars: int) -> Any:
    """A text: valid Unicode, at least one non-space character, at most ``max_chars``. Checked
    by one function, so each broken rule gets its own plain message."""

    def check(value: str) -> str:
        if len(value) > max_chars:
            raise ValueError(f"{len(value):,} characters; the limit is {max_chars:,}")
        if not value.strip():
            raise ValueError("empty text")
        return unicode_text(value)

    schema = {"type": "string", "pattern": r"\S", "maxLength": max_chars}
    return Annotated[str, AfterValidator(check), WithJsonSchema(schema)]


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


class QAInput(BaseModel):
    """One question about one context (question-answering models)."""

    model_config = ConfigDict(extra="forbid")
    question: str
    context: str


@functools.cache  # one class per shape, so the schema names it once for every model
def request_model(qa: bool, max_chars: int) -> type[BaseModel]:
    """The predict body of a model that takes texts, or (``qa``) {question, context}."""
    text = text_type(max_chars)
    example: dict[str, Any]
    if qa:
        item: Any = create_model(
            "QuestionInput",
            __config__=ConfigDict(extra="forbid"),
            question=(text, ...),
            context=(text, ...),
        )
        example = {"inputs": {"question": "Who won?", "context": "Arsenal won 2-0."}}
        what = "one {question, context} object or a list of them"
    else:
        item = text
        example = {"inputs": ["great phone", "broke in a day"]}
        what = "one text or a list of texts"
    # one input or a list: validated as a list, so errors point at inputs.N
    inputs = Annotated[
        list[item], BeforeValidator(_as_list, json_schema_input_type=item | list[item])
    ]
    return create_model(
        "QuestionRequest" if qa else "TextRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [example]}),
        inputs=(
            inputs,
            Field(description=f"{what}; an empty list gets an empty list of predictions"),
        ),
    )


class PredictResponse(BaseModel):
    model: str
    predictions: list[dict[str, Any]] = Field(
        description="one per input, in order. Text classification: label, score, "
        "probabilities; regression: value; multi-label: labels, scores; token "
        "classification: entities (text, type, start, end, score); question "
        "answering: answer, start, end, score; generation: generated"
    )


class ModelInfo(BaseModel):
    name: str
    task: str
    labels: list[str]
    method: str
    backend: str
    folder: str = Field(description="the folder's name; its full path only for admin keys")
    loaded_at: str
    metrics: dict[str, Any]
    export: dict[str, Any] | None = None
