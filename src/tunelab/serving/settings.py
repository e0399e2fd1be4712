"""Server settings: built from the command line, handed to uvicorn's worker processes as JSON
in an environment variable (workers are fresh interpreters that import the app)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from tunelab.web.admission import (
    AUTH_FAILURES_PER_MINUTE,
    MAX_BODY_BYTES,
    REQUESTS_PER_MINUTE_WITH_KEYS,
)

ENV = "TUNELAB_SERVE_SETTINGS"


@dataclass
class ServeSettings:
    """Everything a worker needs to build the app.

    Attributes:
        models: name -> model folder (a run or an export folder).
        api_keys_file: hashed keys (``tunelab keys add``); None means no authentication.
        max_batch_size: most texts in one forward pass.
        max_wait_ms: how long the first request of a batch waits for company.
        max_body_bytes: larger request bodies get 413.
        max_texts: more texts in one request get 413.
        max_text_chars: a longer text gets 422.
        rate_limit: requests per minute per API key; None: 600 with a keys file, no limit
            without one; 0 turns it off. Counted per worker process.
        auth_failure_limit: failed authentications per minute per client address before
            that address gets 429 for a while (with a keys file); 0 turns it off.
        log_requests: one log line per request, personal data in texts masked.
        functions: serve the task functions (POST /v1/functions/NAME) from the registry.
        assistants: name -> knowledge base folder (POST /v1/assistant/NAME/chat).
        tickets: the database of the assistants' hand-offs (default: beside each KB).
        music: name -> music run folder (POST /v1/music/NAME/compose).
    """

    models: dict[str, str] = field(default_factory=dict)
    api_keys_file: str | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_body_bytes: int = MAX_BODY_BYTES
    max_texts: int = 64
    max_text_chars: int = 10_000
    rate_limit: int | None = None
    auth_failure_limit: int = AUTH_FAILURES_PER_MINUTE
    log_requests: bool = False
    functions: bool = False
    assistants: dict[str, str] = field(default_factory=dict)
    tickets: str | None = None
    music: dict[str, str] = field(default_factory=dict)

    def requests_per_minute(self) -> int:
        """The per-key request limit in force (0: none)."""
        if self.rate_limit is not None:
            return self.rate_limit
        return REQUESTS_PER_MINUTE_WITH_KEYS if self.api_keys_file else 0

    def describe_limits(self) -> str:
        """The limits in force, in one line (printed at start-up)."""
        rpm = self.requests_per_minute()
        parts = [
            f"{rpm} requests/min per key" if rpm else "no request rate limit",
            f"{self.auth_failure_limit} failed authentications/min per address"
            if self.api_keys_file and self.auth_failure_limit
            else "no API keys: open to whoever can connect"
            if not self.api_keys_file
            else "no limit on failed authentications",
            f"bodies up to {self.max_body_bytes:,} bytes",
            f"up to {self.max_texts} inputs of {self.max_text_chars:,} characters",
        ]
        return "; ".join(parts)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(ENV)
        if not raw:
            raise RuntimeError(f"{ENV} is not set: start the server with `tunelab serve`")
        return cls(**json.loads(raw))
