"""The studio's JSON API, under ``/v1/studio`` (API key or login session, as every ``/v1`` route):

GET  /v1/studio/form                  the Train form: tasks, models, methods and options
GET  /v1/studio/datasets              bundled sets and uploads
POST /v1/studio/uploads?name=F        the file as the body (50 MB at most) -> its path
GET  /v1/studio/preview?path=&task=   rows, label counts, length histogram, or the error
POST /v1/studio/command               form -> the checked command, argv and YAML (422: why)
GET  /v1/studio/jobs                  the queue;  POST /v1/studio/jobs  form -> a queued job
POST /v1/studio/jobs/{id}/stop        Ctrl-C (a checkpoint is saved); a queued job is dropped
POST /v1/studio/jobs/{id}/resume      from its newest checkpoint
GET  /v1/studio/jobs/{id}/events      server-sent events: each log line as it is written
                                      (``log``), the job's state and progress (``status``)
GET  /v1/studio/runs                  the ``tunelab runs`` rows
GET  /v1/studio/runs/{name}/log       a run's logged events (curves)
GET  /v1/studio/compare?runs=a&runs=b settings that differ, metrics, and each run's events
POST /v1/studio/predict               {run, inputs} -> the run's predictions
POST /v1/studio/exports               {run, format, quantize, prune, sparsity} -> a queued
                                      ``tunelab export`` job
GET  /v1/studio/exports/{name}        an export's record (parity, accuracy before/after)
GET  /v1/studio/serve                 models served from the page;  POST {run} starts one
POST /v1/studio/serve/{run}/stop      stops it
POST /v1/studio/chat                  {message} -> the router's pick, its arguments, result
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from tunelab import estimate
from tunelab.errors import TunelabError
from tunelab.runs import is_run, read_train_log, train_log_path
from tunelab.studio import data, forms, services
from tunelab.studio.jobs import JobQueue
from tunelab.web.errors import http_error, invalid

TERMINAL = ("finished", "failed", "stopped", "interrupted", "cancelled")


class Form(BaseModel):
    """A filled-in Train form: ``name`` and config keys -> values (as in a YAML file)."""

    model_config = {"extra": "allow"}
    name: str = ""


class PredictBody(BaseModel):
    run: str
    inputs: list[Any] = Field(min_length=1, max_length=64)


class ExportBody(BaseModel):
    run: str
    format: str = "onnx"
    quantize: bool = False
    prune: str | None = None
    sparsity: float | None = None


class RunBody(BaseModel):
    run: str


class ChatBody(BaseModel):
    message: str = Field(max_length=2000)


class Studio:
    """What the routes share: the runs folder, the job queue, the model loaded for Try it, the
    servers started from the page."""

    def __init__(
        self, runs_dir: str | Path, queue: JobQueue, api_keys_file: str | None = None
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.queue = queue
        self.servers = services.Servers(self.runs_dir / ".studio", api_keys_file)
        self._model: tuple[str, Any] | None = None  # (run name, loaded model): one at a time
        self._model_lock = threading.Lock()

    def run_path(self, name: str) -> Path:
        if not forms.RUN_NAME.match(name) or not is_run(self.runs_dir / name):
            raise http_error(404, f"no finished run {name!r} in {self.runs_dir}")
        return self.runs_dir / name

    def model(self, name: str):
        """The run's model, loaded once and kept until another run is asked for."""
        import tunelab

        with self._model_lock:
            if self._model is None or self._model[0] != name:
                self._model = None  # free the old one first: one model's memory at a time
                self._model = (name, tunelab.load(self.run_path(name)))
            return self._model[1]


def _checked(fn, *args):
    """``fn(*args)``; a TunelabError (bad settings, bad file) becomes a 422 saying why."""
    try:
        return fn(*args)
    except TunelabError as e:
        raise invalid(("body",), str(e)) from None


def studio_router(studio: Studio) -> APIRouter:
    r = APIRouter(prefix="/v1/studio", tags=["studio"])

    @r.get("/form")
    def form() -> dict:
        return forms.form_schema()

    @r.get("/datasets")
    def datasets() -> dict:
        up = data.uploads_dir(studio.runs_dir)
        files = sorted(up.iterdir(), key=lambda p: p.stat().st_mtime) if up.is_dir() else []
        return {
            "bundled": data.bundled_sets(),
            "uploads": [{"name": p.name, "path": str(p)} for p in files if p.is_file()],
        }

    @r.post("/uploads")
    async def upload(request: Request, name: str = Query(min_length=1, max_length=255)) -> dict:
        body = await request.body()
        path = _checked(data.save_upload, studio.runs_dir, name, body)
        return {"name": path.name, "path": str(path), "bytes": len(body)}

    @r.get("/preview")
    def preview(
        path: str,
        task: str = "text-classification",
        text_column: str | None = None,
        label_column: str | None = None,
    ) -> dict:
        p = _checked(data.allowed_path, path, studio.runs_dir)
        _checked(_task_exists, task)
        return data.preview(str(p), task, text_column, label_column)

    @r.post("/command")
    def command(body: Form) -> dict:
        return _checked(forms.build_command, body.model_dump(), studio.runs_dir)

    @r.get("/jobs")
    def jobs() -> list[dict]:
        return [_job_view(j) for j in studio.queue.list()]

    @r.post("/jobs")
    def submit(body: Form) -> dict:
        cmd = _checked(forms.build_command, body.model_dump(), studio.runs_dir)
        for p in (studio.runs_dir / body.name, studio.runs_dir / f"{body.name}.checkpoints"):
            if p.exists():
                raise invalid(("body", "name"), f"{p}: a run of that name exists; pick another")
        job = _checked(studio.queue.submit, cmd["argv"], cmd["output_dir"], body.name)
        return {**_job_view(job), "command": cmd["command"]}

    @r.post("/jobs/{jid}/stop")
    def stop(jid: str) -> dict:
        return _job_view(_found(studio.queue.stop, jid))

    @r.post("/jobs/{jid}/resume")
    def resume(jid: str) -> dict:
        return _job_view(_found(studio.queue.resume, jid))

    @r.get("/jobs/{jid}/events")
    async def events(jid: str, request: Request) -> StreamingResponse:
        _found(studio.queue.get, jid)
        return StreamingResponse(
            _follow(studio.queue, jid, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @r.get("/runs")
    def runs() -> list[dict]:
        from tunelab.run_index import list_runs

        if not studio.runs_dir.is_dir():
            return []
        return list_runs(studio.runs_dir)

    @r.get("/runs/{name}/log")
    def run_log(name: str) -> list[dict]:
        return read_train_log(studio.run_path(name))

    @r.get("/compare")
    def compare(runs: list[str] = Query(min_length=1, max_length=8)) -> dict:
        from tunelab.run_index import compare_table

        paths = [studio.run_path(n) for n in runs]
        table = compare_table(paths)
        table["logs"] = {p.name: read_train_log(p) for p in paths}
        return table

    @r.post("/predict")
    async def predict(body: PredictBody) -> dict:
        loop = asyncio.get_running_loop()

        def work() -> dict:
            m = studio.model(body.run)
            return {"run": body.run, "task": m.task_name, "predictions": m.predict(body.inputs)}

        try:
            return await loop.run_in_executor(None, work)
        except TunelabError as e:
            raise invalid(("body", "inputs"), str(e)) from None

    @r.post("/exports")
    def export(body: ExportBody) -> dict:
        run = studio.run_path(body.run)
        cmd = _checked(
            services.export_command, run, body.format, body.quantize, body.prune, body.sparsity
        )
        title = f"export {Path(cmd['output_dir']).name}"
        job = _checked(studio.queue.submit, cmd["argv"], cmd["output_dir"], title)
        return _job_view(job)

    @r.get("/exports/{name}")
    def export_record(name: str) -> dict:
        from tunelab.runs import read_run

        info = read_run(studio.run_path(name))
        if not info.export:
            raise http_error(404, f"{name!r} is a training run, not an export")
        return {"run": name, **info.export}

    @r.get("/serve")
    def served() -> list[dict]:
        return studio.servers.list()

    @r.post("/serve")
    def serve(body: RunBody) -> dict:
        return studio.servers.start(body.run, studio.run_path(body.run))

    @r.post("/serve/{name}/stop")
    def stop_serving(name: str) -> dict:
        return _found(studio.servers.stop, name)

    @r.post("/chat")
    async def chat(body: ChatBody) -> dict:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, services.chat, body.message)
        except TunelabError as e:
            raise invalid(("body", "message"), str(e)) from None

    return r


def _tail(path: str, size: int = 3000) -> str:
    """The end of a job's output (its command line, tunelab's messages, a final error)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _task_exists(name: str) -> None:
    from tunelab.tasks import get_task

    get_task(name)


def _found(fn, jid: str):
    try:
        return fn(jid)
    except TunelabError as e:
        code = 404 if str(e).startswith(("no job", "no server")) else 409
        raise http_error(code, str(e)) from None


def _job_view(job) -> dict:
    """A job with its progress (from the run's log, found through runs.py)."""
    d = job.to_dict()
    log = train_log_path(job.output_dir)
    d["progress"] = None
    if log is not None:
        try:
            st = log.stat()
        except OSError:  # the live folder moved on between the two calls
            pass
        else:
            d["progress"] = _progress(str(log), st.st_size, st.st_mtime_ns)
    d["run"] = Path(job.output_dir).name
    return d


@functools.lru_cache(maxsize=256)
def _progress(log: str, size: int, mtime_ns: int) -> dict | None:
    """A log's progress, read again only when the log has changed (size or time): listing the
    jobs does not reread every finished run's whole log."""
    p = estimate.progress(read_train_log(Path(log).parent))
    return p.to_dict() if p is not None else None


async def _follow(queue: JobQueue, jid: str, request: Request):
    """The job's log as server-sent events: every event once (a resumed run's replayed history
    arrives again after a ``reset``), a ``status`` whenever the state or progress moves, and
    the end once the job has stopped and its log is read."""
    path: Path | None = None
    offset = 0
    events: list[dict] = []
    last_status = None
    while not await request.is_disconnected():
        job = queue.get(jid)
        log = train_log_path(job.output_dir)
        if log is not None and log != path:  # the live folder changed (resume, finish)
            if path is not None:
                yield "event: reset\ndata: {}\n\n"
            path, offset, events = log, 0, []
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    f.seek(offset)
                    chunk = f.read()
            except OSError:
                chunk = ""  # renamed into place under us: the next pass finds the new path
            complete = chunk[: chunk.rfind("\n") + 1]  # a half-written line waits
            offset += len(complete.encode("utf-8"))
            for line in complete.splitlines():
                if line.strip():
                    event = json.loads(line)
                    events.append(event)
                    yield f"event: log\ndata: {json.dumps(event)}\n\n"
        p = estimate.progress(events)
        status = {
            "state": job.state,
            "error": job.error,
            "progress": p.to_dict() if p else None,
            "output": _tail(job.log),
        }
        if status != last_status:
            last_status = status
            yield f"event: status\ndata: {json.dumps(status)}\n\n"
        if job.state in TERMINAL:
            yield "event: end\ndata: {}\n\n"
            return
        await asyncio.sleep(0.5)
