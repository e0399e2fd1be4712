"""Start a real `tunelab serve` process on a free loopback port and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `tunelab serve` child process; stderr goes to a log file the tests can read."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        wait_ready: bool = True,
        command: list[str] | None = None,
    ) -> None:
        """``command``: what runs ``tunelab serve`` (default the installed script)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = command or [str(Path(sys.executable).parent / "tunelab"), "serve"]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait_ready:
            self.wait("/readyz")

    def wait(self, path: str, timeout: float = 120.0) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited ({self.proc.returncode}):\n" + self.log.read_text()[-3000:]
                )
            try:
                if self.request("GET", path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{path} not 200 after {timeout}s:\n" + self.log.read_text()[-3000:])

    def request(
        self,
        method: str,
        path: str,
        body=None,
        key: str | None = None,
        content_type: str | None = "application/json",
        raw: bytes | None = None,
        timeout: float = 60.0,
    ) -> tuple[int, dict | str, dict]:
        """(status, parsed JSON or text, headers with lower-case names)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type and data is not None:
            req.add_header("Content-Type", content_type)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, text, headers = r.status, r.read().decode(), _lower(r.headers)
        except urllib.error.HTTPError as e:
            status, text, headers = e.code, e.read().decode(), _lower(e.headers)
        try:
            return status, json.loads(text), headers
        except json.JSONDecodeError:
            return status, text, headers

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _lower(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
