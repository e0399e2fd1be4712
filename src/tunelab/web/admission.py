"""Request admission for the one web application, before any handler runs: API keys or a
login session (401; pages send a visitor without one to the login page; a change made with a
session's cookie needs its CSRF token, 403), failed-authentication and per-key rate limits (429),
the body size (413), the JSON content type (415); then request counts and latency for /metrics,
for every response, the errors included.
"""

from __future__ import annotations

import inspect
import logging
import re
import time

from fastapi import Depends, Request

from tunelab.errors import first_line
from tunelab.web import metrics
from tunelab.web.errors import error_response, http_error
from tunelab.web.guard import RateLimiter
from tunelab.web.keys import ApiKey, match
from tunelab.web.sessions import Sessions, cookie_value, csrf_ok

log = logging.getLogger("tunelab.serve")
_MODEL_PATH = re.compile(r"^/v1/models/([^/]+)/(predict|reload)$")


async def require_json(request: Request) -> None:  # async: no thread hop per request
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise http_error(415, "send the body as JSON with Content-Type: application/json")


def add_json_route(app, path: str, endpoint, body_model, with_request: bool = False, **route):
    """``POST path`` answered by ``endpoint(body[, request])``, its JSON body validated as
    ``body_model``: a class made at run time (one per model or function), so the signature
    FastAPI reads is set here instead of annotated."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("body", kind, annotation=body_model)]
    if with_request:
        params.append(inspect.Parameter("request", kind, annotation=Request))
    endpoint.__signature__ = inspect.Signature(params)
    app.add_api_route(
        path, endpoint, methods=["POST"], dependencies=[Depends(require_json)], **route
    )


# the defaults every part starts from: per-key requests a minute once there are API keys,
# failed authentications a minute per address, request body bytes
REQUESTS_PER_MINUTE_WITH_KEYS = 600
AUTH_FAILURES_PER_MINUTE = 10
MAX_BODY_BYTES = 1_000_000


class Limits:
    """What admission enforces: per-key requests, failed authentications per address, body
    bytes (``body_limits``: path prefix -> a larger limit there, for uploads)."""

    def __init__(self, requests: RateLimiter, auth_failures: RateLimiter, max_body: int) -> None:
        self.requests, self.auth_failures, self.max_body = requests, auth_failures, max_body
        self.body_limits: dict[str, int] = {}

    @classmethod
    def of(cls, requests_per_minute: int, auth_failures_per_minute: int, max_body: int) -> Limits:
        return cls(
            RateLimiter(requests_per_minute), RateLimiter(auth_failures_per_minute), max_body
        )

    def body_limit(self, path: str) -> int:
        return max(
            [v for k, v in self.body_limits.items() if path.startswith(k)], default=self.max_body
        )


class Guard:
    """Admission and accounting around the app (plain ASGI).

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs
    every request through an extra task and memory streams; under 16-client load py-spy
    found it on a quarter of the event loop's samples."""

    def __init__(
        self,
        app,
        keys: list[ApiKey],
        limits: Limits,
        served: dict,
        sessions: Sessions | None = None,
        pages: tuple[str, ...] = (),
    ) -> None:
        self.app, self.keys, self.limits, self.served = app, keys, limits, served
        self.sessions, self.pages = sessions, pages

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"]
        m = _MODEL_PATH.match(path)
        model = m.group(1) if m and m.group(1) in self.served else "-"
        endpoint = m.group(2) if m else _endpoint(path)
        status = [500]
        started = [False]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0], started[0] = message["status"], True
            await send(message)

        try:
            denied = None
            if path.startswith("/v1/"):
                denied = self._authorize(Request(scope))
                if denied is None:
                    denied, receive = await self._read_body(scope, receive)
            elif self.keys and self._is_page(path):
                denied = self._page_session(scope)
            if denied is not None:
                await denied(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        except Exception as e:  # a bug or a failing model: this request's 500, not the server's
            first = first_line(e)
            log.error("%s %s failed: %s: %s", scope["method"], path, type(e).__name__, first)
            log.debug("traceback", exc_info=True)
            if not started[0]:
                msg = f"internal error ({type(e).__name__}); other requests are unaffected"
                await error_response(500, msg)(scope, receive, send_status)
        finally:
            metrics.REQUESTS.labels(model, endpoint, str(status[0])).inc()
            if m or endpoint in ("models", "function"):
                metrics.LATENCY.labels(model, endpoint).observe(time.perf_counter() - t0)

    def _authorize(self, request: Request):
        """None if the request may go on, else the 401/429 response."""
        addr = f"addr:{request.client.host if request.client else '-'}"
        if self.keys:
            # an address that keeps failing waits, whatever key it sends next: otherwise a
            # guesser could tell a right key (200) from a blocked wrong one (429)
            wait = self.limits.auth_failures.peek(addr)
            if wait > 0:
                return _too_many(wait, "too many failed authentications from this address")
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            key = match(self.keys, token.strip()) if scheme.lower() == "bearer" and token else None
            session = None
            if key is None and self.sessions is not None and not token:
                session = self.sessions.get(cookie_value(request.scope["headers"]))
                key = session.key if session is not None else None
            if session is not None and not csrf_ok(
                session, request.method, request.scope["headers"]
            ):
                return error_response(403, "missing or wrong CSRF token (X-CSRF-Token)")
            if key is None:
                self.limits.auth_failures.check(addr)
                return error_response(
                    401, "missing or invalid API key", {"WWW-Authenticate": "Bearer"}
                )
            request.state.key = key
            who = f"key:{key.name}"
        else:
            who = addr
        wait = self.limits.requests.check(who)
        if wait > 0:
            return _too_many(wait, "rate limit exceeded")
        return None

    def _is_page(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.pages)

    def _page_session(self, scope):
        """None if the page request carries a live session, else a redirect to the login page
        (a change without the session's CSRF token: 403)."""
        session = self.sessions.get(cookie_value(scope["headers"])) if self.sessions else None
        if session is None:
            from urllib.parse import quote

            from starlette.responses import RedirectResponse

            return RedirectResponse(f"/login?next={quote(scope['path'])}", status_code=303)
        if not csrf_ok(session, scope["method"], scope["headers"]):
            return error_response(403, "missing or wrong CSRF token (X-CSRF-Token)")
        scope.setdefault("state", {})["key"] = session.key
        return None

    async def _read_body(self, scope, receive):
        """(413 response or None, receive): the body is read here, up to the limit, and
        replayed to the app, so an oversized one is refused before any handler runs."""
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None, receive
        limit = self.limits.body_limit(scope["path"])
        too_big = error_response(413, f"request body over the limit of {limit:,} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        return too_big, receive
                except ValueError:
                    return error_response(400, "malformed Content-Length header"), receive
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, _replay([message], receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return too_big, receive
            chunks.append(chunk)
            more = message.get("more_body", False)
        return None, _replay([{"type": "http.request", "body": b"".join(chunks)}], receive)


def _replay(messages: list, original):
    """A receive that gives ``messages`` first, then waits on the client as before."""
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        return await original()

    return receive


def _too_many(wait: float, why: str):
    return error_response(
        429, f"{why}; retry in {max(1, round(wait))} s", {"Retry-After": str(max(1, round(wait)))}
    )


def _endpoint(path: str) -> str:
    if path == "/v1/models":
        return "models"
    if path.startswith("/v1/functions/"):
        return "function"
    return "other"
