"""Music as a part of the web application (``tunelab serve --music NAME=RUN``, or
``tunelab studio --music NAME=RUN``).

    GET  /music                        the composer page: mood, key, bars, tempo, instrument;
                                       an audio player, the piano roll, the MIDI to download
    POST /v1/music/{name}/compose      {"mood": "calm", "key": "D minor", "bars": 8, ...} ->
                                       the composition with URLs of its MIDI, WAV and PNG; with
                                       "format": "mid" | "wav" | "png" the file itself
    GET  /v1/music/files/{file}        a file composed here (the last few hundred are kept)

Models load in the background when the app starts (/readyz says when); a request to one still
loading gets 503, to an unknown one 404, a bad key or mood 422.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from tunelab.web.admission import require_json
from tunelab.web.app import Part
from tunelab.web.errors import http_error, responses
from tunelab.web.pages import render

HERE = Path(__file__).parent
NAV = [("nav.music", "/music")]
KEEP = 300  # composed files kept (the oldest go first)
MEDIA = {"mid": "audio/midi", "wav": "audio/wav", "png": "image/png"}
_FILE = re.compile(r"^melody-[0-9a-f]{10}\.(mid|wav|png)$")


class ComposeIn(BaseModel):
    mood: str | None = Field(None, max_length=40, description="cheerful, calm, sad, ...")
    key: str | None = Field(None, max_length=20, description="e.g. 'D minor', 'Bb major'")
    bars: int = Field(8, ge=1, le=64)
    tempo: float | None = Field(None, ge=20, le=300, description="quarter notes per minute")
    instrument: str = Field("piano", max_length=20)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    format: Literal["json", "mid", "wav", "png"] = "json"


class ComposeOut(BaseModel):
    key: str
    mood: str | None
    bars: int
    tempo: float
    instrument: str
    notes: int
    seconds: float
    files: dict[str, str] = Field(description="format -> URL")


def music_part(models: dict[str, str]) -> Part:
    """``models``: name -> music run folder."""
    from tunelab.music.model import MusicModel

    loaded: dict[str, MusicModel] = {}
    failed: dict[str, str] = {}
    out = Path(tempfile.mkdtemp(prefix="tunelab-music-"))
    lock = threading.Lock()
    router = APIRouter()

    def load_all() -> None:
        from tunelab.errors import first_line
        from tunelab.music.model import load_music_model

        for name, folder in models.items():
            try:
                loaded[name] = load_music_model(folder)
            except Exception as e:  # noqa: BLE001 - reported on /readyz, the others serve
                failed[name] = first_line(e)

    async def startup() -> None:
        threading.Thread(target=load_all, daemon=True, name="music-load").start()

    async def shutdown() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def ready() -> tuple[str, dict]:
        info = {"music": sorted(loaded), "music_errors": failed}
        if failed:
            return "failed", info
        return ("ready" if len(loaded) == len(models) else "loading"), info

    def model(name: str) -> MusicModel:
        if name not in models:
            raise http_error(404, f"no music model named {name!r}")
        if name in failed:
            raise http_error(503, f"music model {name!r} failed to load: {failed[name]}")
        if name not in loaded:
            raise http_error(503, f"music model {name!r} is still loading", **{"Retry-After": "5"})
        return loaded[name]

    def compose_now(m: MusicModel, body: ComposeIn) -> dict[str, Any]:
        from tunelab.errors import TunelabError
        from tunelab.music.compose import compose

        with lock:  # one composition at a time per process: the models are small and fast
            try:
                c = compose(m, out, body.mood, body.key, body.bars, body.tempo,
                            body.instrument, body.seed)  # fmt: skip
            except TunelabError as e:
                raise http_error(422, str(e)) from None
            _prune(out)
        d = asdict(c)
        return {**d, "paths": {"mid": d["midi"], "wav": d["wav"], "png": d["png"]}}

    @router.post(
        "/v1/music/{name}/compose",
        response_model=ComposeOut,
        dependencies=[Depends(require_json)],
        responses={
            **responses(400, 401, 404, 415, 429, 503),
            200: {"content": {t: {} for t in MEDIA.values()}},
        },  # fmt: skip
    )
    async def compose_route(name: str, body: ComposeIn):
        m = model(name)
        c = await asyncio.to_thread(compose_now, m, body)
        if body.format != "json":
            p = c["paths"][body.format]
            return FileResponse(p, media_type=MEDIA[body.format], filename=Path(p).name)
        files = {f: f"/v1/music/files/{Path(p).name}" for f, p in c["paths"].items()}
        return {**{k: c[k] for k in ComposeOut.model_fields if k != "files"}, "files": files}

    @router.get("/v1/music/files/{file}", responses=responses(401, 404, 429))
    async def file(file: str) -> Response:
        p = out / file
        if not _FILE.match(file) or not p.is_file():
            raise http_error(404, f"no composed file {file!r} (files are kept for a while only)")
        return FileResponse(p, media_type=MEDIA[p.suffix[1:]])

    @router.get("/music", include_in_schema=False)
    def page(request: Request) -> Response:
        from tunelab.music.compose import MOODS
        from tunelab.music.render import INSTRUMENTS

        return render(request, "music.html", page="music", names=list(models),
                      moods=list(MOODS), instruments=list(INSTRUMENTS))  # fmt: skip

    return Part(
        "music",
        router,
        startup=startup,
        shutdown=shutdown,
        ready=ready,
        static={"/static/music": HERE / "static"},
        page_prefixes=("/music",),
        templates=HERE / "templates",
        nav=NAV,
    )


def _prune(folder: Path) -> None:
    files = sorted(folder.glob("melody-*"), key=lambda p: p.stat().st_mtime)
    for p in files[: max(0, len(files) - KEEP)]:
        p.unlink(missing_ok=True)


def parse_music(specs: list[str]) -> dict[str, str]:
    """``--music NAME=RUN`` pairs (as ``--model``); each folder must be a music run."""
    from tunelab.cliargs import parse_named
    from tunelab.errors import TunelabError
    from tunelab.music.runfolder import MUSIC_FILE

    runs = parse_named(specs, "--music", "melody=runs/melody-vae")
    for name, folder in runs.items():
        if not (Path(folder) / MUSIC_FILE).is_file():
            raise TunelabError(
                f"--music {name}={folder}: {folder} is not a music run (no {MUSIC_FILE}; "
                "train one with `tunelab music train`)"
            )
    return runs
