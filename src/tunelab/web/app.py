"""The one web application: an app factory that composes parts (serving's API, the studio, and
the systems to come), behind one admission guard (API keys or a login session, rate limits, body
limits), one error model and one set of health routes.

    GET /healthz   alive (no key needed)
    GET /readyz    200 once every part is ready (serving: every model loaded), else 503
    GET /metrics   Prometheus text format

``tunelab serve`` builds it with the serving part, ``tunelab studio`` with the studio's; a system
adds a :class:`Part` of its own instead of a second app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from tunelab.web import errors, metrics
from tunelab.web.admission import Guard, Limits
from tunelab.web.errors import NotReady
from tunelab.web.keys import ApiKey
from tunelab.web.pages import STATIC as PAGE_STATIC
from tunelab.web.pages import Pages, shell_router
from tunelab.web.sessions import Sessions


@dataclass
class Part:
    """One set of routes of the web application and what the app around it needs to know.

    Attributes:
        name: for logs and errors.
        router: the part's routes (JSON under ``/v1/``: API key or login session; pages
            under ``page_prefixes``: login session).
        startup, shutdown: run once when the app starts and stops (load models, start a queue).
        ready: ``(state, info)`` for /readyz: state is ready, loading or failed; info is merged
            into the body (serving: the models; an error line when not ready).
        models: served model names (label the request metrics).
        static: URL prefix -> folder served as files (assets served by us: no CDN, no internet).
        page_prefixes: paths of HTML pages: with API keys they need a login session, and a
            visitor without one is sent to the login page.
        body_limits: path prefix -> the largest request body there (uploads), over the app's.
        templates: the folder of the part's page templates (they extend the shell's
            ``base.html``: ``tunelab.web.pages``).
        nav: the part's pages in the header, as (i18n key, path).
    """

    name: str
    router: APIRouter
    startup: Callable[[], Awaitable[None]] | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None
    ready: Callable[[], tuple[str, dict]] | None = None
    models: dict = field(default_factory=dict)
    static: dict[str, Path] = field(default_factory=dict)
    page_prefixes: tuple[str, ...] = ()
    body_limits: dict[str, int] = field(default_factory=dict)
    templates: Path | None = None
    nav: list[tuple[str, str]] = field(default_factory=list)


def create_app(
    parts: list[Part],
    keys: list[ApiKey],
    limits: Limits,
    *,
    title: str = "tunelab",
    description: str = "",
    version: str = "",
    brand: str = "studio",
) -> FastAPI:
    """The app serving ``parts`` behind one guard; their startups run in order, shutdowns in
    reverse order. Parts with pages share the page shell (``web.pages``: header, navigation,
    sign-in, stylesheet, Chart.js); ``brand`` is the header's i18n key."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for p in parts:
            if p.startup is not None:
                await p.startup()
        try:
            yield
        finally:
            for p in reversed(parts):
                if p.shutdown is not None:
                    await p.shutdown()

    app = FastAPI(title=title, version=version, lifespan=lifespan, description=description)
    models: dict = {}
    for p in parts:
        models.update(p.models)
        limits.body_limits.update(p.body_limits)
    pages = tuple(x for p in parts for x in p.page_prefixes)
    sessions = Sessions() if keys else None
    app.state.sessions = sessions
    app.state.keys = keys
    app.state.auth_failures = limits.auth_failures if keys else None
    app.state.pages = Pages(
        [p.templates for p in parts if p.templates], [n for p in parts for n in p.nav], brand
    )
    app.add_middleware(
        Guard, keys=keys, limits=limits, served=models, sessions=sessions, pages=pages
    )
    errors.install(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={503: {"model": NotReady, "description": "loading, or a model failed to load"}},
    )
    def readyz():
        body: dict = {"status": "ready"}
        for p in parts:
            if p.ready is None:
                continue
            state, info = p.ready()
            if state != "ready":
                return JSONResponse({"status": state, **info}, status_code=503)
            body.update(info)
        return body

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        data, ctype = metrics.render()
        return Response(data, media_type=ctype)

    if any(p.templates for p in parts):
        app.include_router(shell_router())
        app.mount("/static/web", StaticFiles(directory=PAGE_STATIC), name="web-static")
    for p in parts:
        app.include_router(p.router)
        for prefix, folder in p.static.items():
            app.mount(prefix, StaticFiles(directory=folder), name=f"{p.name}-static{prefix}")
    return app
