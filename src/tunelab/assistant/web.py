"""The assistant as a part of the web application (``tunelab serve --assistant NAME=KB``, or
``tunelab studio --assistant NAME=KB``).

    GET  /assistant                    the chat page (every KB; answers, sources, confidence,
                                       the hand-offs), English and Chinese
    POST /v1/assistant/{name}/chat     {"message": "...", "session": "..."} -> the answer, as
                                       ``tunelab assistant ask`` prints it, plus the session id
                                       (a new one when none was given: send it back to continue)
    GET  /v1/assistant/{name}/tickets  ?status=open|answered: the hand-offs of that KB

The knowledge bases load in the background when the app starts (/readyz says when); a message
to one still loading gets 503, to an unknown one 404, an empty one 422.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator

from tunelab.web.admission import require_json
from tunelab.web.app import Part
from tunelab.web.errors import http_error, responses
from tunelab.web.pages import render

HERE = Path(__file__).parent
NAV = [("nav.assistant", "/assistant")]


class ChatIn(BaseModel):
    message: str = Field(min_length=1, max_length=2000, description="the user's message")
    session: str | None = Field(
        None, max_length=200, description="the conversation (absent: a new one is started)"
    )

    @field_validator("message")
    @classmethod
    def _message(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("message is empty")
        return v


class ChatOut(BaseModel):
    answer: str
    matched_question: str | None = Field(
        description="the FAQ question or passage id; null on hand-off"
    )
    score: float = Field(description="the calibrated probability that the answer is right")
    handoff: bool
    threshold: float
    session: str
    ticket: int | None = None
    candidates: list[dict[str, Any]]


def assistant_part(kbs: dict[str, str], tickets: str | None = None) -> Part:
    """``kbs``: name -> KB folder; ``tickets``: the database of hand-offs (default: beside each
    KB, as the CLI)."""
    from tunelab.assistant.assistant import Assistant

    bots: dict[str, Assistant] = {}
    failed: dict[str, str] = {}
    router = APIRouter()

    def load_all() -> None:
        from tunelab.assistant.cli import tickets_db
        from tunelab.assistant.encoder import Encoder
        from tunelab.assistant.kb import KnowledgeBase
        from tunelab.errors import first_line
        from tunelab.store.db import open_store

        encoders: dict[str, Encoder] = {}
        for name, folder in kbs.items():
            try:
                info = KnowledgeBase.load_info(folder)
                enc = encoders.get(info["model"]) or Encoder(info["model"])
                encoders[info["model"]] = enc
                kb = KnowledgeBase.load(folder, encoder=enc)
                bots[name] = Assistant(kb, open_store(tickets_db(folder, tickets)), name)
            except Exception as e:  # noqa: BLE001 - reported on /readyz, the others serve
                failed[name] = first_line(e)

    async def startup() -> None:
        threading.Thread(target=load_all, daemon=True, name="assistant-load").start()

    def ready() -> tuple[str, dict]:
        info = {"assistants": sorted(bots), "assistant_errors": failed}
        if failed:
            return "failed", info
        return ("ready" if len(bots) == len(kbs) else "loading"), info

    def bot(name: str):
        if name not in kbs:
            raise http_error(404, f"no assistant named {name!r}")
        if name in failed:
            raise http_error(503, f"assistant {name!r} failed to load: {failed[name]}")
        if name not in bots:
            raise http_error(503, f"assistant {name!r} is still loading", **{"Retry-After": "5"})
        return bots[name]

    @router.post(
        "/v1/assistant/{name}/chat",
        response_model=ChatOut,
        dependencies=[Depends(require_json)],
        responses=responses(400, 401, 404, 415, 429, 503),
    )
    async def chat(name: str, body: ChatIn) -> dict:
        b = bot(name)
        session = body.session or uuid.uuid4().hex
        out = await asyncio.to_thread(b.ask, body.message, session)
        return {**out, "session": session}

    @router.get("/assistant", include_in_schema=False)
    def page(request: Request) -> Response:
        return render(request, "assistant.html", page="assistant", names=list(kbs))

    @router.get("/v1/assistant/{name}/tickets", responses=responses(401, 404, 429, 503))
    async def tickets_list(
        name: str, status: str | None = Query(None, pattern="^(open|answered)$")
    ) -> list[dict]:
        from tunelab.store.tickets import list_tickets

        b = bot(name)
        return await asyncio.to_thread(list_tickets, b.store, status, b.name)

    return Part(
        "assistant",
        router,
        startup=startup,
        ready=ready,
        static={"/static/assistant": HERE / "static"},
        page_prefixes=("/assistant",),
        templates=HERE / "templates",
        nav=NAV,
    )


def parse_kbs(specs: list[str]) -> dict[str, str]:
    """``--assistant NAME=KB`` pairs (as ``--model``); each folder must be a knowledge base."""
    from tunelab.cliargs import parse_named
    from tunelab.errors import TunelabError

    kbs = parse_named(specs, "--assistant", "python=runs/kb-python")
    for name, folder in kbs.items():
        if not (Path(folder) / "kb.json").is_file():
            raise TunelabError(
                f"--assistant {name}={folder}: {folder} is not a knowledge base (no kb.json)"
            )
    return kbs
