"""The assistant's hand-offs: a ticket per conversation handed to a human (personal data masked
as in monitoring), listed, answered, and read back as FAQ entries for a rebuilt KB."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tunelab.errors import TunelabError
from tunelab.privacy import mask
from tunelab.store.schema import tickets


def open_ticket(
    engine: Engine, kb: str, session: str, conversation: list[dict], candidates: list[dict]
) -> int:
    """Store a hand-off; returns the ticket's number (committed when this returns)."""
    convo = [{"role": m["role"], "text": mask(m["text"])} for m in conversation]
    question = next(m["text"] for m in reversed(convo) if m["role"] == "user")
    with engine.begin() as conn:
        r = conn.execute(
            tickets.insert().values(
                kb=kb,
                session=session,
                created_at=datetime.now(timezone.utc),
                question=question,
                conversation=convo,
                candidates=candidates,
                status="open",
            )
        )
        key = r.inserted_primary_key
        assert key is not None
        return int(key[0])


def list_tickets(engine: Engine, status: str | None = None, kb: str | None = None) -> list[dict]:
    q = sa.select(tickets).order_by(tickets.c.id)
    if status:
        q = q.where(tickets.c.status == status)
    if kb:
        q = q.where(tickets.c.kb == kb)
    with engine.connect() as conn:
        rows = conn.execute(q).mappings().all()
    return [
        {
            **dict(r),
            "created_at": r["created_at"].isoformat(),
            "answered_at": r["answered_at"].isoformat() if r["answered_at"] else None,
        }
        for r in rows
    ]


def answer_ticket(engine: Engine, ticket: int, answer: str) -> None:
    if not answer.strip():
        raise TunelabError(f"ticket {ticket}: the answer is empty")
    with engine.begin() as conn:
        done = conn.execute(
            tickets.update()
            .where(tickets.c.id == ticket)
            .values(
                status="answered",
                answer=answer.strip(),
                answered_at=datetime.now(timezone.utc),
            )
        )
    if done.rowcount == 0:
        raise TunelabError(f"ticket {ticket}: no such ticket")
