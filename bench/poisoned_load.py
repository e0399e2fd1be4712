"""One bad request must not hurt another: `tunelab serve` under a 16-client load where 25% of
the requests are poisoned, against the same load with none.

Three runs of the same server on the same run folder, one after the other:
  clean       every request a sentence of the bundled English test split (reference);
  surrogate   25% send ``{"inputs": ["\\ud800abc"]}`` (valid JSON, a lone UTF-16 surrogate:
              before the fix it broke the shared forward pass, failing 87 of 90 valid requests);
  model-fail  25% send a text that makes the model itself raise (tests/faulty_serve.py), so
              the batch they share fails and is re-run request by request.
Reported per run: the valid requests' throughput, its ratio to the clean run (target >= 0.70),
and how many valid requests failed (target 0).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/poisoned_load.py --run runs/demo \\
        --duration 20 --out bench/results/poisoned_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.report import emit  # noqa: E402
from bench.serve_load import free_port, post, wait_ready  # noqa: E402
from bench.startup import cpu  # noqa: E402

BIN = Path(sys.executable).parent
SURROGATE = b'{"inputs": ["\\ud800abc"]}'
BOOM = b'{"inputs": ["BOOM this text makes the model raise"]}'


async def client(port, texts, poison, share, seed, until, warm_until, out) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while (now := time.perf_counter()) < until:
        bad = poison is not None and rng.random() < share
        body = poison if bad else json.dumps({"inputs": rng.choice(texts)}).encode()
        status = await post(reader, writer, "/v1/models/m/predict", body)
        if now >= warm_until:
            out.append((bad, status, time.perf_counter() - now))
    writer.close()


def measure(port, texts, poison, share, clients, duration, warmup) -> dict:
    out: list[tuple[bool, int, float]] = []
    start = time.perf_counter()

    async def run():
        await asyncio.gather(
            *(
                client(
                    port,
                    texts,
                    poison,
                    share,
                    i,
                    start + warmup + duration,
                    start + warmup,
                    out,
                )
                for i in range(clients)
            )
        )

    asyncio.run(run())
    valid = sorted(lat for bad, _, lat in out if not bad)
    return {
        "valid_requests_per_s": len(valid) / duration,
        "valid_requests": len(valid),
        "valid_failed": sum(1 for bad, s, _ in out if not bad and s != 200),
        "poisoned_requests": sum(1 for bad, _, _ in out if bad),
        "poisoned_statuses": sorted({s for bad, s, _ in out if bad}),
        "valid_p50_ms": 1000 * valid[len(valid) // 2],
        "valid_p99_ms": 1000 * valid[int(0.99 * (len(valid) - 1))],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo", help="finished text-classification run")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--share", type=float, default=0.25, help="share of poisoned requests")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--out")
    a = ap.parse_args()
    texts = [
        r["text"]
        for r in csv.DictReader(open(ROOT / "data/en_sentiment/test.csv", encoding="utf-8"))
    ]
    cmd = [sys.executable, str(ROOT / "tests" / "faulty_serve.py"), "--model", f"m={a.run}"]
    rows = []
    for name, poison in (("clean", None), ("surrogate", SURROGATE), ("model-fail", BOOM)):
        port = free_port()
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)],
            cwd=ROOT,
            env={**os.environ},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
            r = measure(port, texts, poison, a.share, a.clients, a.duration, a.warmup)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        rows.append({"load": name, **r})
        print(f"{name}: {r}", file=sys.stderr)
    for r in rows:
        r["valid_throughput_ratio"] = r["valid_requests_per_s"] / rows[0]["valid_requests_per_s"]
    result = {
        "command": " ".join(sys.argv),
        "cpu": cpu(),
        "clients": a.clients,
        "poisoned_share": a.share,
        "rows": rows,
    }
    emit(result, a.out)


if __name__ == "__main__":
    main()
