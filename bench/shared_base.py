"""Resident memory of several runs on one base model loaded in one process, with the base's
weights shared (tunelab's default) and with a copy per run (``TUNELAB_SHARE_BASE=0``, what
loading each run with ``from_pretrained`` + PEFT gives).

Each setting in its own child process: load the given run folders one after the other with
``tunelab.load`` and record the resident set size (RSS, from /proc) after each, and the scores
of a few texts (which must not depend on sharing).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/shared_base.py RUN1 RUN2 RUN3 \\
        --out bench/results/shared_base.json

It also reports the bound of many adapters on one base (the first run's resident memory plus
10%, plus each further run's trained tensors) and whether the shared setting stays under it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from bench.report import emit  # noqa: E402

from tunelab.machine import describe as describe_machine  # noqa: E402

TEXTS = [
    "这个酒店的服务太差了，再也不来了。",
    "书的内容很好，物流也快。",
    "Great value, works well.",
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(runs: list[str], precision: str) -> None:
    import tunelab

    out = {"start_mb": rss_mb(), "after": [], "scores": []}
    models = []
    for run in runs:
        m = tunelab.load(run, precision=precision)
        models.append(m)
        out["after"].append({"run": run, "rss_mb": rss_mb(), "backend": m.backend})
    for m in models:
        out["scores"].append(
            m.logits(TEXTS[:2]).round(4).tolist()
            if m.task_name not in ("token-classification", "generation")
            else None
        )
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--precision", default="fp32", help="fp32, bf16 or auto (what serving picks)")
    ap.add_argument("--out")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.runs, a.precision)
        return
    result: dict = {"machine": describe_machine(), "command": " ".join(sys.argv), "rows": []}
    for share in ("1", "0"):
        env = {**os.environ, "TUNELAB_SHARE_BASE": share}
        cmd = [sys.executable, __file__, "--worker", "--precision", a.precision, *a.runs]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
        if r.returncode:
            sys.exit(r.stderr[-3000:])
        row = json.loads(r.stdout.strip().splitlines()[-1])
        row["setup"] = "shared base (tunelab)" if share == "1" else "a copy per run"
        result["rows"].append(row)
        print(row["setup"], [round(x["rss_mb"]) for x in row["after"]], file=sys.stderr)
    shared, copies = result["rows"]
    assert shared["scores"] == copies["scores"], "sharing changed a score"
    result["rss_mb_shared"] = shared["after"][-1]["rss_mb"]
    result["rss_mb_copies"] = copies["after"][-1]["rss_mb"]
    result["saved_mb"] = result["rss_mb_copies"] - result["rss_mb_shared"]
    # issue 25's bound: N runs on one base in at most the base plus N adapters plus 10%,
    # read as the first run's resident set (the runtime, the base, its adapter and tokenizer)
    # plus every further run's trained tensors (their safetensors on disk, fp32) plus 10% of it
    first = shared["after"][0]["rss_mb"]
    adapters = [_trained_mb(Path(r)) for r in a.runs]
    result["adapter_mb"] = adapters
    result["bound_mb"] = round(first * 1.10 + sum(adapters[1:]), 1)
    result["bound_met"] = result["rss_mb_shared"] <= result["bound_mb"]
    emit(result, a.out)


def _trained_mb(run: Path) -> float:
    """The run's own trained tensors: the weight files in its folder (an adapter and head)."""
    return round(sum(f.stat().st_size for f in run.glob("*.safetensors")) / 2**20, 1)


if __name__ == "__main__":
    main()
