"""Serving under load: `tunelab serve` against a naive FastAPI handler, side by side.

The naive server (bench/naive_server.py) is what users hand-write: one forward pass per
request, plain Transformers, on the merged `hf` export of the run. `tunelab serve` serves the
run folder (PyTorch, dynamic batching) and the ONNX int8 export. Each server runs alone in its
own process; the load generator is one asyncio process with C concurrent keep-alive clients,
each sending one sentence (the bundled English test split) per request, back to back, for D
seconds after a warm-up; it reports requests/s, p50/p99 latency and errors.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_load.py --run runs/demo --clients 16 \\
        --duration 30 --out bench/results/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"{url} not ready after {timeout}s")


async def post(reader, writer, path: str, body: bytes) -> int:
    """One JSON POST on a keep-alive connection; the response's status (its body is read)."""
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
        f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(v)
        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
        if k.strip().lower() == b"content-length"
    )
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def client(
    port: int,
    path: str,
    texts: list[str],
    seed: int,
    until: float,
    warm_until: float,
    lat: list[float],
    errors: list[int],
) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while True:
        now = time.perf_counter()
        if now >= until:
            break
        body = json.dumps({"inputs": rng.choice(texts)}).encode()
        status = await post(reader, writer, path, body)
        if now >= warm_until:
            lat.append(time.perf_counter() - now)
            if status != 200:
                errors.append(status)
    writer.close()


def load(
    port: int, path: str, texts: list[str], clients: int, duration: float, warmup: float
) -> dict:
    lat: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()

    async def run():
        await asyncio.gather(
            *(
                client(port, path, texts, i, start + warmup + duration, start + warmup, lat, errors)
                for i in range(clients)
            )
        )

    asyncio.run(run())
    lat.sort()
    return {
        "requests_per_s": len(lat) / duration,
        "requests": len(lat),
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
        "errors": len(errors),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo", help="finished text-classification run")
    ap.add_argument("--work", default="/tmp/tunelab-serve-load", help="export folders")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    work = Path(a.work)
    for fmt, extra in (
        ("hf", []),
        (
            "onnx-int8",
            ["--format", "onnx", "--quantize", "int8", "--eval-data", "data/en_sentiment/test.csv"],
        ),
    ):
        cmd = [
            str(BIN / "tunelab"),
            "export",
            "--model-dir",
            a.run,
            "--output-dir",
            str(work / fmt),
            "--overwrite",
            *extra,
        ]
        if subprocess.run(cmd, cwd=ROOT, capture_output=True).returncode:
            sys.exit(f"failed: {' '.join(cmd)}")
    texts = [
        r["text"]
        for r in csv.DictReader(open(ROOT / "data/en_sentiment/test.csv", encoding="utf-8"))
    ]
    servers = [
        (
            "naive FastAPI, one forward pass per request (reference)",
            [str(BIN / "uvicorn"), "bench.naive_server:app", "--log-level", "warning"],
            {"TUNELAB_NAIVE_MODEL": str(work / "hf")},
            "/predict",
            "/docs",
        ),
        (
            "tunelab serve, run folder (PyTorch)",
            [str(BIN / "tunelab"), "serve", "--model", f"m={a.run}", "--rate-limit", "0"],
            {},
            "/v1/models/m/predict",
            "/readyz",
        ),
        (
            "tunelab serve, ONNX int8 export",
            [
                str(BIN / "tunelab"),
                "serve",
                "--model",
                f"m={work / 'onnx-int8'}",
                "--rate-limit",
                "0",
            ],
            {},
            "/v1/models/m/predict",
            "/readyz",
        ),
    ]
    rows = []
    for name, cmd, env, path, ready in servers:
        port = free_port()
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}{ready}", proc)
            r = load(port, path, texts, a.clients, a.duration, a.warmup)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        rows.append({"server": name, **r})
        print(f"{name}: {r}", file=sys.stderr)
    for r in rows:
        r["throughput_ratio"] = r["requests_per_s"] / rows[0]["requests_per_s"]
    print(
        f"{a.clients} concurrent clients, {a.duration:.0f} s each after {a.warmup:.0f} s "
        "warm-up\n\n| server | requests/s | x reference | p50 (ms) | p99 (ms) | errors |\n"
        "|---|--:|--:|--:|--:|--:|"
    )
    for r in rows:
        print(
            f"| {r['server']} | {r['requests_per_s']:.0f} | {r['throughput_ratio']:.2f}x | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        )
    if a.out:
        Path(a.out).write_text(
            json.dumps(
                {"run": a.run, "clients": a.clients, "duration_s": a.duration, "rows": rows},
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
