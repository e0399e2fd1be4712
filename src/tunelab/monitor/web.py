"""The monitor as a part of the web application: the dashboard page, its JSON, and the HTTP
ingest route. ``tunelab monitor serve`` runs it alone; ``tunelab studio --monitor monitor.yaml``
adds it to the studio (one app, one guard: API keys as in ``tunelab serve``).

    GET  /monitor                 the dashboard (live: it polls the overview)
    GET  /v1/monitor/overview     ?span=6h&until=ISO&bucket=5m: what the dashboard draws
    GET  /v1/monitor/alerts       ?limit=50: the alert history, newest first
    POST /v1/monitor/posts        a batch of posts {id, text, time, source}: analysed, stored
                                  (answered once committed), counted in the windows

Ingesting the same (source, id) twice stores it once, so a client retries a batch whose answer
it did not get. A batch the database refuses gets 503 and nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tunelab.errors import DataError, TunelabError
from tunelab.monitor.config import MonitorConfig
from tunelab.web.admission import require_json
from tunelab.web.app import Part
from tunelab.web.errors import http_error, responses
from tunelab.web.pages import render

HERE = Path(__file__).parent
MAX_POSTS = 1000
BODY_LIMIT = 8 * 2**20
NAV = [("nav.monitor", "/monitor")]


class PostIn(BaseModel):
    """One post. Extra fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    id: str | int = Field(description="the post's id in its source (stored once per source)")
    text: str = Field(min_length=1, max_length=100_000)
    time: str | float | None = Field(
        None, description="ISO 8601 or epoch seconds (absent: now); windows use this time"
    )
    source: str = Field("api", min_length=1, max_length=100)

    @field_validator("time")
    @classmethod
    def _time(cls, v):
        from tunelab.monitor.sources import parse_time

        try:
            parse_time(v, "post", 0)
        except DataError:
            raise ValueError(f"time {v!r} is not ISO 8601 or epoch seconds") from None
        return v

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is empty")
        return v


class Batch(BaseModel):
    posts: list[PostIn] = Field(min_length=1, max_length=MAX_POSTS)


class Ingested(BaseModel):
    received: int
    stored: int = Field(description="new posts, committed")
    duplicates: int = Field(description="posts stored before (same source and id)")
    stored_ids: list[str]


def _span(text: str, what: str) -> float:
    from tunelab.errors import ConfigError
    from tunelab.monitor.rules import parse_duration

    try:
        s = parse_duration(text, what)
    except ConfigError as e:
        raise http_error(400, str(e)) from None
    if not 60 <= s <= 400 * 86400:
        raise http_error(400, f"{what} {text!r} must be between 1m and 400d")
    return s


def monitor_part(cfg: MonitorConfig, ingest: bool = True, tick_s: float = 5.0) -> Part:
    """The dashboard and its JSON; with ``ingest``, also ``POST /v1/monitor/posts`` (the models
    load when the app starts)."""
    from tunelab.monitor import queries
    from tunelab.store.db import open_store

    engine = open_store(cfg.database)
    state: dict[str, Any] = {"monitor": None, "error": None}
    stop = threading.Event()
    r = APIRouter()

    @r.get("/monitor", include_in_schema=False)
    def page(request: Request) -> Response:
        return render(
            request, "dashboard.html", page="monitor", ingest=ingest, window_s=cfg.rules.window_s
        )

    @r.get("/v1/monitor/overview", tags=["monitor"])
    def overview(
        span: str = "6h", until: datetime | None = None, bucket: str | None = None
    ) -> dict:
        """Volume and sentiment over time, per source and topic; top and trending entities;
        the latest negative posts (masked); the alerts of the period (ending at ``until``,
        default the newest post)."""
        b = int(_span(bucket, "bucket")) if bucket else None
        return queries.overview(engine, _span(span, "span"), until, b, cfg.rules.window_s)

    @r.get("/v1/monitor/alerts", tags=["monitor"])
    def alerts(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict]:
        from tunelab.store.alerts import alert_history

        return alert_history(engine, limit)

    if ingest:

        @r.post(
            "/v1/monitor/posts",
            tags=["monitor"],
            dependencies=[Depends(require_json)],
            responses=responses(400, 401, 413, 415, 429, 503),
        )
        def posts(body: Batch) -> Ingested:
            """Analyse and store a batch; answered once its rows are committed."""
            from tunelab.monitor.sources import to_post

            mon = state["monitor"]
            if mon is None:
                raise http_error(503, state["error"] or "the monitor's models are loading")
            batch = [
                to_post(p.model_dump(), "request", i, "api") for i, p in enumerate(body.posts, 1)
            ]
            try:
                stored = mon.process(batch)
            except TunelabError as e:
                raise http_error(503, f"{e}; nothing of this batch was stored: retry") from None
            ids = [p.post_id for p in batch if (p.source, p.post_id) in stored]
            return Ingested(
                received=len(batch),
                stored=len(stored),
                duplicates=len(batch) - len(stored),
                stored_ids=ids,
            )

    async def startup() -> None:
        if not ingest:
            return
        from tunelab.monitor.engine import Monitor

        try:
            state["monitor"] = await asyncio.to_thread(Monitor, cfg)
        except TunelabError as e:
            state["error"] = str(e)
            return
        threading.Thread(target=_ticker, daemon=True).start()

    def _ticker() -> None:  # a quiet live stream still closes its windows
        while not stop.wait(tick_s):
            state["monitor"].tick()

    async def shutdown() -> None:
        stop.set()
        if state["monitor"] is not None:
            state["monitor"].delivery.close()

    def ready() -> tuple[str, dict]:
        if not ingest or state["monitor"] is not None:
            return "ready", {}
        if state["error"]:
            return "failed", {"error": state["error"]}
        return "loading", {"error": None}

    return Part(
        "monitor",
        r,
        startup,
        shutdown,
        ready,
        static={"/static/monitor": HERE / "static"},
        page_prefixes=("/monitor",),
        body_limits={"/v1/monitor/posts": BODY_LIMIT},
        templates=HERE / "templates",
        nav=NAV,
    )
