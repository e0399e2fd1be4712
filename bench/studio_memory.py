"""Resident memory of `tunelab studio`: idle (pages and API up, no model loaded), after the
pages have been fetched, and with a model loaded by Try it.

    python bench/studio_memory.py --runs-dir runs --run demo --out bench/results/studio_memory.json

The studio runs as its own process on a free loopback port; RSS is read from /proc (VmRSS, and
VmHWM for the peak). Prints one JSON object and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _rss_mb(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    out = {}
    for line in status.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":")
            out["rss_mb" if k == "VmRSS" else "peak_mb"] = round(int(v.split()[0]) / 1024, 1)
    return out


def _get(url: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read()


def main() -> int:
    from tunelab.machine import describe

    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    a.add_argument("--runs-dir", default="runs")
    a.add_argument("--run", required=True, help="a finished run in --runs-dir, for Try it")
    a.add_argument("--out", default="bench/results/studio_memory.json")
    args = a.parse_args()
    from tunelab.studio.services import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunelab",
            "studio",
            "--port",
            str(port),
            "--runs-dir",
            args.runs_dir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        for _ in range(600):
            try:
                _get(url + "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(2)
        result = {"idle": _rss_mb(proc.pid)}
        for page in ("data", "train", "runs", "try", "export", "chat"):
            _get(f"{url}/studio/{page}")
        for api in ("form", "datasets", "runs", "jobs"):
            _get(f"{url}/v1/studio/{api}")
        result["pages_and_api_served"] = _rss_mb(proc.pid)
        t0 = time.perf_counter()
        _get(url + "/v1/studio/predict", {"run": args.run, "inputs": ["a fine film"]})
        result["try_it_first_call_s"] = round(time.perf_counter() - t0, 2)
        result["try_it_model_loaded"] = _rss_mb(proc.pid)
        result["run"] = args.run
        result["machine"] = describe()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
