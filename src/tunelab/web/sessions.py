"""Login sessions for the web pages: a browser signs in once with an API key (the login form)
and then carries an HttpOnly, SameSite=Strict cookie; a request that changes something with
that cookie must also send the session's CSRF token in ``X-CSRF-Token`` (the pages read it from
a ``<meta>`` tag). Scripts use ``Authorization: Bearer <key>`` as with ``tunelab serve``.

Sessions live in memory: a restarted server asks for the key again.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from tunelab.web.keys import ApiKey

COOKIE = "tunelab_session"
CSRF_HEADER = "x-csrf-token"
IDLE_SECONDS = 12 * 3600  # a session unused this long is gone
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Session:
    key: ApiKey
    csrf: str
    last_seen: float


class Sessions:
    """Session id -> the key that signed in, its CSRF token and when it was last used."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle = idle_seconds
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, key: ApiKey) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        s = Session(key, secrets.token_urlsafe(24), time.monotonic())
        with self._lock:
            self._by_id[sid] = s
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = time.monotonic()
        with self._lock:
            s = self._by_id.get(sid)
            if s is None:
                return None
            if now - s.last_seen > self.idle:
                del self._by_id[sid]
                return None
            s.last_seen = now
            return s

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


def cookie_value(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The session cookie of an ASGI request's headers, if any."""
    for name, value in headers:
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    return v
    return None


def csrf_ok(session: Session, method: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request made with ``session``'s cookie may go on: reads always, changes only
    with the session's token in the header (a page on another site cannot read it)."""
    if method not in UNSAFE:
        return True
    sent = next((v.decode("latin-1") for k, v in headers if k == CSRF_HEADER.encode()), "")
    return secrets.compare_digest(sent, session.csrf)
