"""One error model for the whole HTTP API, declared in the OpenAPI schema.

Every error is JSON. A request the schema rejects, or whose values break a rule the schema
cannot express (an empty text, too many characters), gets 422 in FastAPI's own validation
format (``{"detail": [{"loc", "msg", "type"}]}``, the declared ``HTTPValidationError``); every
other error gets ``{"detail": "one line"}`` (:class:`ErrorBody`):

    400 malformed JSON           401 missing or invalid API key     403 needs an admin key
    404 unknown model            409 the model folder is damaged    413 body or inputs too large
    415 not JSON                 429 rate limit                      500 the model failed
    503 still loading
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

log = logging.getLogger("tunelab.serve")

DESCRIPTIONS = {
    400: "malformed JSON body",
    401: "missing or invalid API key",
    403: "needs an admin key",
    404: "unknown model or function",
    409: "the model folder is damaged; the model loaded before keeps serving",
    413: "body or number of inputs over the limit",
    415: "the body is not JSON (Content-Type: application/json)",
    429: "rate limit (per key), or too many failed authentications (per address)",
    500: "the model failed on this request; other requests are unaffected",
    503: "the model is still loading",
}


class NotReady(BaseModel):
    """/readyz while a part is not ready."""

    status: str = Field(description="loading or failed")
    error: str | None = Field(description="why each failed model failed")


class ErrorBody(BaseModel):
    """Every error except 422: one line saying what was wrong and what to do."""

    detail: str = Field(description="what went wrong, in one line")


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer ``codes``."""
    return {c: {"model": ErrorBody, "description": DESCRIPTIONS[c]} for c in codes}


def http_error(code: int, detail: str, **headers: str) -> HTTPException:
    return HTTPException(status_code=code, detail=detail, headers=headers or None)


def invalid(loc: tuple[str | int, ...], msg: str) -> RequestValidationError:
    """A 422 in the declared validation format, for rules the schema cannot express."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": None}])


def error_response(code: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


def install(app: FastAPI) -> None:
    """Malformed JSON -> 400 (FastAPI says 422). (Exceptions no handler caught become a JSON
    500 in :class:`tunelab.web.admission.Guard`.)"""

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            why = (bad_json.get("ctx") or {}).get("error", "") or bad_json.get("msg", "")
            return error_response(400, f"malformed JSON body: {why}".rstrip(": "))
        body = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in errors]
        return JSONResponse({"detail": _plain(body)}, status_code=422)


def _plain(value: Any) -> Any:
    """JSON-safe validation details (loc entries and messages only)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
