"""The Export and Chat pages' work: an export is a queued ``tunelab export`` job (the same queue
as training), a served model is a ``tunelab serve`` process the studio starts and stops, and a
chat message goes through the router exactly as ``tunelab route`` sends it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tunelab.errors import TunelabError

FORMATS = ("hf", "onnx")
PRUNE = ("magnitude", "heads")


def export_command(run: Path, fmt: str, quantize: bool, prune: str | None, sparsity) -> dict:
    """The checked ``tunelab export`` of ``run``: argv (after ``tunelab``) and the folder it
    writes (next to the run, named after it and the options)."""
    if fmt not in FORMATS:
        raise TunelabError(f"key 'format' = {fmt!r} must be {' or '.join(FORMATS)}")
    name = f"{run.name}-{fmt}"
    argv = ["export", "--model-dir", str(run), "--format", fmt]
    if quantize:
        argv += ["--quantize", "int8"]
        name += "-int8"
    if prune:
        if prune not in PRUNE:
            raise TunelabError(f"key 'prune' = {prune!r} must be {' or '.join(PRUNE)}")
        try:
            s = float(sparsity)
        except (TypeError, ValueError):
            raise TunelabError(
                f"key 'sparsity' = {sparsity!r} must be a number in (0, 1)"
            ) from None
        if not 0 < s < 1:
            raise TunelabError(f"key 'sparsity' = {s!r} must be in (0, 1)")
        argv += ["--prune", prune, "--sparsity", f"{s:g}"]
        name += f"-{prune}{round(s * 100)}"
    out = run.parent / name
    if out.exists():
        raise TunelabError(f"{out}: that export exists already")
    return {"argv": [*argv, "--output-dir", str(out)], "output_dir": str(out)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """``tunelab serve`` processes started from the page, one per run, on loopback ports."""

    def __init__(self, logs: Path, api_keys_file: str | None = None) -> None:
        self.logs, self.keys_file = logs, api_keys_file
        self._procs: dict[str, tuple[subprocess.Popen, int]] = {}
        self._lock = threading.Lock()

    def start(self, name: str, folder: Path) -> dict:
        with self._lock:
            if name in self._procs and self._procs[name][0].poll() is None:
                return self.describe(name)
            port = free_port()
            self.logs.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-m", "tunelab", "serve", "--model", f"{name}={folder}"]
            argv += ["--port", str(port)]
            if self.keys_file:
                argv += ["--api-keys-file", self.keys_file]
            with open(self.logs / f"serve-{name}.log", "ab") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self._procs[name] = (proc, port)
        return self.describe(name)

    def describe(self, name: str) -> dict:
        proc, port = self._procs[name]
        url = f"http://127.0.0.1:{port}"
        auth = " -H 'Authorization: Bearer KEY'" if self.keys_file else ""
        return {
            "run": name,
            "url": url,
            "pid": proc.pid,
            "running": proc.poll() is None,
            "ready": proc.poll() is None and _ready(url),
            "curl": f"curl{auth} -H 'Content-Type: application/json' "
            f'-d \'{{"inputs": ["a great phone"]}}\' {url}/v1/models/{name}/predict',
        }

    def list(self) -> list[dict]:
        return [self.describe(n) for n in list(self._procs)]

    def stop(self, name: str) -> dict:
        with self._lock:
            if name not in self._procs:
                raise TunelabError(f"no server for {name!r}")
            proc, _ = self._procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # uvicorn finishes requests in flight
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        out = self.describe(name)
        with self._lock:
            del self._procs[name]
        return out

    def close(self) -> None:
        for name in list(self._procs):
            try:
                self.stop(name)
            except (TunelabError, ProcessLookupError):
                pass


def _ready(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/readyz", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


def chat(message: str, threshold: float | None = None) -> dict:
    """Route ``message`` as ``tunelab route`` does: which function, how sure, its arguments and
    result, or why nothing was called."""
    from tunelab.functions.cli import routed_json
    from tunelab.functions.router import DEFAULT_THRESHOLD, route

    message = message.strip()
    if not message:
        raise TunelabError("type a request first")
    t0 = time.perf_counter()
    out = routed_json(route(message, DEFAULT_THRESHOLD if threshold is None else threshold))
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
