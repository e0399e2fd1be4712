"""Server settings: built from the command line, handed to uvicorn's worker processes as JSON
in an environment variable (workers are fresh interpreters that import the app)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

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
        rate_limit: requests per minute per API key (per client address without keys);
            0 turns it off. Counted per worker process.
        log_requests: one log line per request, personal data in texts masked.
        functions: serve the task functions (POST /v1/functions/NAME) from the registry.
    """

    models: dict[str, str] = field(default_factory=dict)
    api_keys_file: str | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_body_bytes: int = 1_000_000
    max_texts: int = 64
    max_text_chars: int = 10_000
    rate_limit: int = 600
    log_requests: bool = False
    functions: bool = False

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(ENV)
        if not raw:
            raise RuntimeError(f"{ENV} is not set: start the server with `tunelab serve`")
        return cls(**json.loads(raw))
