"""``tunelab serve`` and ``tunelab keys``: check everything, then hand over to uvicorn."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.serving.settings import ENV, ServeSettings


def parse_models(specs: list[str]) -> dict[str, str]:
    """``NAME=DIR`` pairs; each folder must be a finished run or export."""
    from tunelab.cliargs import parse_named
    from tunelab.inference import check_files
    from tunelab.runs import read_run

    models = parse_named(specs, "--model", "sentiment=runs/reviews")
    for folder in models.values():
        info = read_run(folder)
        check_files(Path(folder), info.export or {})
    return {name: str(Path(folder).resolve()) for name, folder in models.items()}


def serve(settings: ServeSettings, host: str, port: int, workers: int) -> None:
    import uvicorn

    from tunelab.web.keys import read_keys

    if settings.api_keys_file:
        read_keys(settings.api_keys_file)  # a bad file fails here, with its line
    if workers < 1:
        raise TunelabError("--workers must be at least 1")
    os.environ[ENV] = settings.to_env()
    prom_dir = None
    if workers > 1:  # workers share their metrics through files (set before any import)
        prom_dir = tempfile.mkdtemp(prefix="tunelab-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    try:
        uvicorn.run(
            "tunelab.serving.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_graceful_shutdown=30,
            log_level="info",
        )
    finally:
        if prom_dir:
            shutil.rmtree(prom_dir, ignore_errors=True)


def add_serve(sub) -> None:
    """``tunelab serve``."""
    import argparse

    d = ServeSettings()
    s = sub.add_parser(
        "serve",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="serve models over an authenticated HTTP API (FastAPI + uvicorn)",
        description="Serve one or more model folders (runs or exports) over HTTP: "
        "POST /v1/models/NAME/predict, GET /v1/models, /healthz, /readyz, "
        "/metrics (Prometheus), OpenAPI docs at /docs. Concurrent requests are "
        "batched into shared forward passes.",
        epilog="examples:\n"
        "  tunelab keys add alice --file keys.txt          # prints the key once\n"
        "  tunelab serve --model sentiment=runs/reviews --api-keys-file keys.txt\n"
        "  curl -H 'Authorization: Bearer KEY' -H 'Content-Type: application/json' \\\n"
        '       -d \'{"inputs": ["great phone"]}\' '
        "http://127.0.0.1:8000/v1/models/sentiment/predict",
    )
    s.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a model to serve under NAME (repeat for more)",
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes, each with its own copy of the models",
    )
    s.add_argument(
        "--api-keys-file",
        help="hashed keys from `tunelab keys add`; without it "
        "the API is open to whoever can reach it",
    )
    s.add_argument(
        "--max-batch-size",
        type=int,
        default=d.max_batch_size,
        help=f"most texts per forward pass (default {d.max_batch_size})",
    )
    s.add_argument(
        "--max-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help="how long a request waits for others to share its forward pass "
        f"(default {d.max_wait_ms})",
    )
    s.add_argument(
        "--max-body-bytes",
        type=int,
        default=d.max_body_bytes,
        help=f"larger bodies get 413 (default {d.max_body_bytes:,})",
    )
    s.add_argument(
        "--max-texts",
        type=int,
        default=d.max_texts,
        help=f"more inputs per request get 413 (default {d.max_texts})",
    )
    s.add_argument(
        "--max-text-chars",
        type=int,
        default=d.max_text_chars,
        help=f"a longer input gets 422 (default {d.max_text_chars:,})",
    )
    s.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help="requests per minute per API key, 0 = off (default: 600 with --api-keys-file, "
        "none without); counted per worker",
    )
    s.add_argument(
        "--auth-failure-limit",
        type=int,
        default=d.auth_failure_limit,
        help="failed authentications per minute per client address before it gets 429 "
        f"(default {d.auth_failure_limit}; 0 = off)",
    )
    s.add_argument(
        "--log-requests",
        action="store_true",
        help="log each prediction request, with e-mails, phone and ID numbers masked",
    )
    s.add_argument(
        "--functions",
        action="store_true",
        help="also serve the task functions (POST /v1/functions/NAME: "
        "analyze_sentiment, classify, ...) backed by the model registry",
    )
    s.add_argument(
        "--assistant",
        action="append",
        default=[],
        metavar="NAME=KB",
        help="a knowledge base to chat with at POST /v1/assistant/NAME/chat (repeat for more; "
        "built by `tunelab assistant build`)",
    )
    s.add_argument(
        "--tickets", help="database for the assistants' hand-offs (default: beside each KB)"
    )
    s.add_argument(
        "--music",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="a music model to compose with at POST /v1/music/NAME/compose (MIDI, WAV, PNG; "
        "trained by `tunelab music train`)",
    )
    s.set_defaults(func=cmd_serve)


def add_keys(sub) -> None:
    k = sub.add_parser("keys", allow_abbrev=False, help="make API keys for `tunelab serve`")
    ks = k.add_subparsers(dest="keys_command", metavar="add", required=True)
    add = ks.add_parser(
        "add",
        allow_abbrev=False,
        help="add a key to a keys file; the key is printed once, only its hash is stored",
    )
    add.add_argument("name", help="who the key is for (shown in logs)")
    add.add_argument("--file", required=True, help="keys file (created if missing)")
    add.add_argument("--admin", action="store_true", help="may reload models")
    add.set_defaults(func=cmd_keys_add)


def cmd_serve(a) -> int:
    if not a.model and not a.functions and not a.assistant and not a.music:
        raise TunelabError(
            "give at least one --model NAME=DIR, --assistant NAME=KB, --music NAME=RUN or "
            "--functions"
        )
    from tunelab.assistant.web import parse_kbs
    from tunelab.music.web import parse_music

    settings = ServeSettings(
        models=parse_models(a.model),
        api_keys_file=a.api_keys_file,
        max_batch_size=a.max_batch_size,
        max_wait_ms=a.max_wait_ms,
        max_body_bytes=a.max_body_bytes,
        max_texts=a.max_texts,
        max_text_chars=a.max_text_chars,
        rate_limit=a.rate_limit,
        auth_failure_limit=a.auth_failure_limit,
        log_requests=a.log_requests,
        functions=a.functions,
        assistants=parse_kbs(a.assistant),
        tickets=a.tickets,
        music=parse_music(a.music),
    )
    serve(settings, a.host, a.port, a.workers)
    return 0


def cmd_keys_add(a) -> int:
    from tunelab.web.keys import add_key

    token = add_key(a.file, a.name, a.admin)
    print(token)
    import sys

    print(
        f"key for {a.name!r} ({'admin' if a.admin else 'user'}) added to {a.file}; it is "
        "shown only now, store it safely",
        file=sys.stderr,
    )
    return 0
