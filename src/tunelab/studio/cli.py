"""``tunelab studio``: the web application with the studio's part (its pages and JSON API)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fastapi import APIRouter, FastAPI

from tunelab.errors import TunelabError
from tunelab.web.app import Part


def studio_part(runs_dir: str | Path, api_keys_file: str | None = None) -> Part:
    """The studio as a part of the web application: pages, API, assets and the job queue."""
    from tunelab.studio import data
    from tunelab.studio.api import Studio, studio_router
    from tunelab.studio.jobs import JobQueue
    from tunelab.studio.pages import NAV, STATIC, TEMPLATES, pages_router

    runs = Path(runs_dir).resolve()  # jobs and a restarted studio agree on paths
    runs.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(runs / ".studio" / "jobs")
    router = APIRouter()
    studio = Studio(runs, queue, api_keys_file)
    router.include_router(studio_router(studio))
    router.include_router(pages_router(runs))

    async def startup() -> None:
        queue.start()

    async def shutdown() -> None:
        queue.close()  # running jobs go on; the next studio re-attaches to them
        studio.servers.close()

    return Part(
        "studio",
        router,
        startup,
        shutdown,
        static={"/static/studio": STATIC},
        page_prefixes=("/studio",),
        body_limits={"/v1/studio/uploads": data.UPLOAD_LIMIT},
        templates=TEMPLATES,
        nav=NAV,
    )


def create_studio_app(
    runs_dir: str | Path,
    api_keys_file: str | None = None,
    monitor_config: str | None = None,
    assistants: dict[str, str] | None = None,
    tickets: str | None = None,
    music: dict[str, str] | None = None,
) -> FastAPI:
    from tunelab import __version__
    from tunelab.web.admission import (
        AUTH_FAILURES_PER_MINUTE,
        MAX_BODY_BYTES,
        REQUESTS_PER_MINUTE_WITH_KEYS,
        Limits,
    )
    from tunelab.web.app import create_app
    from tunelab.web.keys import read_keys

    keys = read_keys(api_keys_file) if api_keys_file else []
    # the same defaults as `tunelab serve`
    limits = Limits.of(
        REQUESTS_PER_MINUTE_WITH_KEYS if keys else 0, AUTH_FAILURES_PER_MINUTE, MAX_BODY_BYTES
    )
    parts = [studio_part(runs_dir, api_keys_file)]
    if monitor_config:  # the monitor's dashboard and ingest route join the studio
        from tunelab.monitor.config import load_config
        from tunelab.monitor.web import monitor_part

        parts.append(monitor_part(load_config(monitor_config)))
    if assistants:  # the assistant's chat page and routes join the studio
        from tunelab.assistant.web import assistant_part

        parts.append(assistant_part(assistants, tickets))
    if music:  # the composer page and routes join the studio
        from tunelab.music.web import music_part

        parts.append(music_part(music))
    return create_app(
        parts,
        keys,
        limits,
        title="tunelab studio",
        version=__version__,
        description="The studio's pages and JSON API (/v1/studio).",
    )


def add_studio(sub) -> None:
    from tunelab.studio.data import UPLOAD_LIMIT

    s = sub.add_parser(
        "studio",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="the whole workflow in a web page: data, training, live curves, runs, try it",
        description="A web page for the whole workflow: preview and check a data file, fill in "
        "a training run (the page shows the same `tunelab train` command and YAML), watch its "
        "loss and metric curves live, stop and resume it, compare runs and try a model. "
        "Training jobs queue up and run one at a time in their own processes: closing the "
        "page or restarting the studio does not stop them. Every asset is served locally "
        f"(no internet needed). Uploads: at most {UPLOAD_LIMIT // 2**20} MB each, stored in "
        "RUNS_DIR/.studio/uploads.",
        epilog="examples:\n"
        "  tunelab studio                                  # then open http://127.0.0.1:7860\n"
        "  tunelab keys add me --file keys.txt\n"
        "  tunelab studio --host 0.0.0.0 --api-keys-file keys.txt   # others sign in with a key",
    )
    s.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--runs-dir", default="runs", help="where runs are written (default: runs)")
    s.add_argument(
        "--api-keys-file",
        help="API keys (`tunelab keys add`): every page and API call then needs one (pages: "
        "sign in once; scripts: Authorization: Bearer KEY)",
    )
    s.add_argument(
        "--monitor",
        metavar="MONITOR_YAML",
        help="add the public-opinion monitor's dashboard and ingest route (tunelab monitor)",
    )
    s.add_argument(
        "--assistant",
        action="append",
        default=[],
        metavar="NAME=KB",
        help="add the assistant's chat page for a knowledge base (tunelab assistant build)",
    )
    s.add_argument(
        "--tickets", help="database for the assistant's hand-offs (default: beside the KB)"
    )
    s.add_argument(
        "--music",
        action="append",
        default=[],
        metavar="NAME=RUN",
        help="add the composer page for a music model (tunelab music train)",
    )
    s.set_defaults(func=cmd_studio)


def cmd_studio(a: argparse.Namespace) -> int:
    import sys

    import uvicorn

    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.api_keys_file:
        raise TunelabError(
            f"--host {a.host} opens the studio to other machines: give --api-keys-file too"
        )
    from tunelab.assistant.web import parse_kbs
    from tunelab.music.web import parse_music

    app = create_studio_app(
        a.runs_dir,
        a.api_keys_file,
        a.monitor,
        parse_kbs(a.assistant),
        a.tickets,
        parse_music(a.music),
    )
    print(f"tunelab studio: http://{a.host}:{a.port}/ (runs in {a.runs_dir})", file=sys.stderr)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", timeout_graceful_shutdown=5)
    return 0
