"""``POST /v1/functions/{name}``: the registered task functions over HTTP.

Each function gets its own operation whose body is built from the function's signature and
type hints (texts: valid Unicode, non-empty, at most ``--max-text-chars``; a list at most
``--max-texts`` long; integers strict and bounded), so the OpenAPI schema says exactly what
each function accepts. A name no function has gets 404.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, create_model

from tunelab.functions import FUNCTIONS, as_json
from tunelab.serving.schemas import text_type
from tunelab.serving.settings import ServeSettings
from tunelab.web.admission import add_json_route
from tunelab.web.errors import http_error, responses

# integer arguments with a natural range (an unbounded max_new_tokens would tie up a worker)
INT_RANGES = {"max_new_tokens": (1, 1024)}


class FunctionResult(BaseModel):
    function: str
    result: Any = Field(description="the function's result as JSON (see `tunelab functions`)")


def _number(value: Any) -> Any:
    """JSON numbers only (2.0 is the integer 2, as JSON Schema says); not true or "2"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a JSON number")
    return value


def argument_model(name: str, fn, settings: ServeSettings) -> type[BaseModel]:
    """The request body of function ``name``: one field per parameter of ``fn``."""
    hints = typing.get_type_hints(fn)
    text = text_type(settings.max_text_chars)
    fields: dict[str, Any] = {}
    for k, p in inspect.signature(fn).parameters.items():
        allowed = typing.get_args(hints[k]) or (hints[k],)
        listable = any(typing.get_origin(a) is list for a in allowed)
        kind = next(a for a in allowed if a in (str, int, float))
        if kind is str:
            one: Any = text
        elif kind is int:
            lo, hi = INT_RANGES.get(k, (None, None))
            one = Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_number)]
        else:
            one = Annotated[float, BeforeValidator(_number)]
        typ = one | Annotated[list[one], Field(min_length=1)] if listable else one
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[k] = (typ, default)
    title = "".join(w.title() for w in name.split("_")) + "Arguments"
    return create_model(title, __config__=ConfigDict(extra="forbid"), **fields)


def add_function_routes(app: APIRouter, settings: ServeSettings) -> None:
    """``POST /v1/functions/NAME`` for every function registered by now, backed by the model
    registry (``tunelab register``)."""
    for name, fn in FUNCTIONS.items():
        _add(app, name, fn, argument_model(name, fn, settings), settings)

    _add_plan(app, settings)

    # not in the schema: the schema lists exactly the functions there are
    @app.post("/v1/functions/{name}", include_in_schema=False)
    async def unknown_function(name: str) -> None:
        raise http_error(404, f"no function {name!r}; functions: {', '.join(FUNCTIONS)}")


def _add(app: APIRouter, name: str, fn, body_model: type[BaseModel], settings) -> None:
    from tunelab.errors import TunelabError

    async def call(body) -> dict:
        args = body.model_dump(exclude_unset=True)
        for k, v in args.items():
            if isinstance(v, list) and len(v) > settings.max_texts:
                raise http_error(413, f"{k} has {len(v)} items; the limit is {settings.max_texts}")
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, lambda: fn(**args))
        except TunelabError as e:  # no model registered, or one of the wrong task
            raise http_error(404, str(e)) from None
        return {"function": name, "result": as_json(result)}

    doc = (inspect.getdoc(fn) or "").split("\n\n")[0]
    add_json_route(
        app,
        f"/v1/functions/{name}",
        call,
        body_model,
        response_model=FunctionResult,
        tags=["functions"],
        responses=responses(400, 401, 404, 413, 415, 429, 500),
        summary=f"Call {name}",
        description=doc,
        operation_id=f"function_{name}",
    )


PlannerChoice = typing.Literal["auto", "rules"]


class PlanResult(BaseModel):
    request: str
    instruction: str
    input: list[str]
    plan: list[dict] | None = Field(description="the steps; null when the request is refused")
    planner: str = Field(description="model (the registered planner) or rules")
    seconds: float
    steps: list[str] | None = None
    trace: list[dict] | None = None
    summary: str | None = None
    refused: str | None = None


def _add_plan(app: APIRouter, settings: ServeSettings) -> None:
    """``POST /v1/plan``: a compound request planned over the registered functions, checked,
    and (unless ``execute`` is false) run with a trace."""
    from tunelab.errors import TunelabError
    from tunelab.planning.compound import run_request
    from tunelab.planning.program import PlanError

    body_model = create_model(
        "PlanRequest",
        __config__=ConfigDict(extra="forbid"),
        request=(text_type(settings.max_text_chars), ...),
        execute=(StrictBool, True),  # JSON true/false only, not 0 or "yes"
        planner=(PlannerChoice, "auto"),
    )

    async def call(body) -> dict:
        def work() -> dict:
            return run_request(
                body.request, body.execute, body.planner == "rules", max_texts=settings.max_texts
            )

        try:
            return await asyncio.get_running_loop().run_in_executor(None, work)
        except PlanError as e:
            raise http_error(413 if "limit" in str(e) else 422, str(e)) from None
        except TunelabError as e:  # a function the plan calls has no model registered
            raise http_error(404, str(e)) from None

    add_json_route(
        app,
        "/v1/plan",
        call,
        body_model,
        response_model=PlanResult,
        tags=["functions"],
        responses=responses(400, 401, 404, 413, 415, 429, 500),
        summary="Plan and run a compound request",
        description="A request that needs several function calls ('find the negative reviews "
        "and list the companies they mention: ...') becomes a plan over the registered "
        "functions, checked against their signatures, run with a trace and summarised.",
        operation_id="plan",
    )
