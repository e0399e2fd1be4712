"""Answering: the best candidate's answer when the calibrated confidence reaches the KB's
threshold, else a hand-off to a human (a ticket with the conversation and the candidates).

Multi-turn: a session keeps its last questions. A follow-up is also searched together with the
previous question ("and on Windows?" after "how do I make a standalone binary"); the reading
with the higher confidence wins. A document passage is answered with the passage itself, or,
with an extractive QA run (``qa_model``), with the span the run finds in it, citing the passage.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from tunelab.assistant import retrieval
from tunelab.assistant.kb import KnowledgeBase
from tunelab.assistant.text import is_chinese

HANDOFF = {
    "en": "I'm not sure about that one, so I've passed your question to a colleague "
    "(ticket {ticket}). They will get back to you.",
    "zh": "这个问题我不太确定，已经转给人工客服（工单 {ticket}），他们会尽快回复您。",
}
FOLLOW_UP_WORDS = 6  # a question this short may lean on the one before it
SESSIONS = 10_000  # the most sessions kept in memory (least recently used dropped first)


@dataclass
class Session:
    turns: list[dict] = field(default_factory=list)  # {role, text}
    questions: list[str] = field(default_factory=list)


class Assistant:
    def __init__(self, kb: KnowledgeBase, store=None, name: str = "kb", qa_model=None) -> None:
        self.kb = kb
        self.store = store  # a SQLAlchemy engine for tickets (None: hand-offs not stored)
        self.name = name
        self.qa = qa_model
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.lock = threading.Lock()

    def _session(self, sid: str) -> Session:
        with self.lock:
            s = self.sessions.pop(sid, None) or Session()
            self.sessions[sid] = s
            while len(self.sessions) > SESSIONS:
                self.sessions.popitem(last=False)
            return s

    def reading(self, question: str, previous: str | None) -> tuple[str, list, float]:
        """(the query used, its candidates, the confidence of the top one)."""
        cands = self.kb.search(question)
        p = self.probability(cands)
        short = (
            len(question) <= 2 * FOLLOW_UP_WORDS
            if is_chinese(question)
            else len(question.split()) <= FOLLOW_UP_WORDS
        )
        if previous and short:
            joined = f"{previous} {question}"
            c2 = self.kb.search(joined)
            p2 = self.probability(c2)
            if p2 > p:
                return joined, c2, p2
        return question, cands, p

    def probability(self, cands: list[retrieval.Candidate]) -> float:
        cal = self.kb.calibration
        return cal.probability(retrieval.features(cands)) if cal else 0.0

    def ask(self, question: str, session: str | None = None) -> dict:
        t0 = time.perf_counter()
        question = question.strip()
        s = self._session(session) if session else Session()
        previous = s.questions[-1] if s.questions else None
        query, cands, p = self.reading(question, previous)
        s.questions.append(question)
        s.turns.append({"role": "user", "text": question})
        threshold = self.kb.calibration.threshold if self.kb.calibration else 1.0
        top = [self._shown(c) for c in cands[:5]]
        out: dict = {
            "answer": None,
            "matched_question": None,
            "score": round(p, 4),
            "handoff": bool(p < threshold or not cands),
            "threshold": round(threshold, 4),
            "query": query,
            "candidates": top,
        }
        if out["handoff"]:
            lang = "zh" if is_chinese(question) else "en"
            ticket = None
            if self.store is not None:
                from tunelab.store.tickets import open_ticket

                ticket = open_ticket(self.store, self.name, session or "-", s.turns, top)
            out["ticket"] = ticket
            out["answer"] = HANDOFF[lang].format(ticket=ticket if ticket is not None else "-")
        else:
            e = self.kb.entries[cands[0].entry]
            out["matched_question"] = e.question if e.kind == "faq" else e.id
            out["id"] = e.id
            out["answer"] = e.answer
            if e.kind == "passage":
                out["source"] = e.source
                if self.qa is not None:
                    span = self.qa.predict([{"question": query, "context": e.answer}])[0]
                    out["answer"] = span.get("answer") or e.answer
                    out["passage"] = e.answer
        s.turns.append({"role": "assistant", "text": out["answer"]})
        out["seconds"] = round(time.perf_counter() - t0, 4)
        return out

    def _shown(self, c: retrieval.Candidate) -> dict:
        e = self.kb.entries[c.entry]
        return {
            "id": e.id,
            "question": e.question,
            "kind": e.kind,
            "fused": round(c.score, 5),
            "cosine": round(c.dense, 4),
            "bm25": round(c.bm25, 3),
        }
