"""``POST /v1/functions/{name}``: the registered task functions over HTTP, their arguments as a
JSON object checked against the functions' type hints."""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from fastapi import Depends, FastAPI

from tunelab.functions import FUNCTIONS, as_json
from tunelab.serving.admission import require_json
from tunelab.serving.errors import http_error, invalid, responses
from tunelab.serving.settings import ServeSettings

# the path parameter of /v1/functions/{name}: OpenAPI lists the functions by name (members
# made at run time, which mypy cannot see: hence the ignore)
FunctionName = enum.Enum("FunctionName", {n: n for n in FUNCTIONS}, type=str)  # type: ignore[misc]


def add_function_routes(app: FastAPI, settings: ServeSettings) -> None:
    """``POST /v1/functions/{name}``: the task functions of :mod:`tunelab.functions`, their
    arguments as a JSON object, backed by the model registry (``tunelab register``)."""
    import inspect
    import typing

    from tunelab.errors import TunelabError
    from tunelab.serving.app import unicode_text

    # rebuilt with each app, so every function registered by now is served and listed (the
    # annotation below is a string, resolved from this module's globals when decorated)
    global FunctionName
    FunctionName = enum.Enum("FunctionName", {n: n for n in FUNCTIONS}, type=str)  # type: ignore[misc]

    @app.post(
        "/v1/functions/{name}",
        tags=["functions"],
        dependencies=[Depends(require_json)],
        responses=responses(400, 401, 404, 413, 415, 429, 500),
    )
    async def call_function(name: FunctionName, args: dict[str, Any]) -> dict:
        """Call a task function; the body holds its arguments, e.g. {"text": "..."}
        (`tunelab functions --schema` lists them)."""
        fn_name: str = name.value
        fn = FUNCTIONS[fn_name]
        params = inspect.signature(fn).parameters
        extra = set(args) - set(params)
        missing = [
            k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in args
        ]
        if extra or missing:
            raise invalid(
                ("body",),
                f"{fn_name} takes {', '.join(params)}"
                + (f"; unknown: {', '.join(sorted(extra))}" if extra else "")
                + (f"; missing: {', '.join(missing)}" if missing else ""),
            )
        hints = typing.get_type_hints(fn)
        for k, v in args.items():
            allowed = typing.get_args(hints[k]) or (hints[k],)
            listable = any(typing.get_origin(a) is list for a in allowed)
            kind = next(a for a in allowed if a in (str, int, float))
            if isinstance(v, list) and listable and len(v) > settings.max_texts:
                raise http_error(413, f"{k} has {len(v)} items; the limit is {settings.max_texts}")
            items = v if isinstance(v, list) and listable else [v]
            # exact types: JSON true is not an integer here, and a list needs a list type
            if not items or not all(
                type(t) is kind and (kind is not str or t.strip()) for t in items
            ):
                raise invalid(
                    ("body", k),
                    f"{k} must be a non-empty {kind.__name__}"
                    + (" or a list of them" if listable else ""),
                )
            if any(isinstance(t, str) and len(t) > settings.max_text_chars for t in items):
                raise invalid(("body", k), f"longer than {settings.max_text_chars} characters")
            for t in items:
                if isinstance(t, str):
                    try:
                        unicode_text(t)
                    except ValueError as e:
                        raise invalid(("body", k), str(e)) from None
        try:
            result = await asyncio.get_running_loop().run_in_executor(None, lambda: fn(**args))
        except TunelabError as e:  # no model registered, or one of the wrong task
            raise http_error(404, str(e)) from None
        return {"function": fn_name, "result": as_json(result)}
