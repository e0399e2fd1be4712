"""`tunelab plan` benchmark (issue 24): the planner's estimates of time and peak memory against
the real runs of its plans, on the bundled data sets, on this machine.

For each case: `tunelab plan` (with its probe) writes a plan; `tunelab train --config PLAN` then
runs it as a child process whose wall time and peak resident memory (``ru_maxrss`` from
``wait4``) are measured; the error of each estimate is (estimate - measured) / measured. The
target is within 25% for both. Each case runs alone; nothing else should load the machine.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/plan.py [--cases en_sentiment en_ratings zh_sentiment]
        [--out bench/results/plan.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = ROOT / "data"


def splits(name: str) -> list[str]:
    d = DATA / name
    return ["--train", f"{d}/train.csv", "--validation", f"{d}/validation.csv",
            "--test", f"{d}/test.csv"]  # fmt: skip


# name -> the `tunelab plan` arguments (what a user would type)
CASES: dict[str, list[str]] = {
    "en_sentiment": splits("en_sentiment"),
    "en_ratings": splits("en_ratings"),
    # the full Chinese set takes hours on two cores: planned to a 10-minute budget, so the
    # planner's cuts are measured too
    "zh_sentiment": [*splits("zh_sentiment"), "--budget", "10m"],
    # one file only: the planner splits it 80/10/10
    "en_sentiment_split": ["--train", f"{DATA}/en_sentiment/train.csv"],
}


def timed_child(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of a child process."""
    started = time.perf_counter()
    with open(log, "w") as fh:
        child = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    return time.perf_counter() - started, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def run_case(name: str, work: Path) -> dict:
    tunelab = [sys.executable, "-m", "tunelab"]
    out = work / name
    plan_file = work / f"{name}.plan.yaml"
    plan_s, _, code = timed_child(
        [*tunelab, "plan", *CASES[name], "--output-dir", str(out), "--plan", str(plan_file)],
        work / f"{name}.plan.log",
    )
    if code not in (0, 4):
        raise SystemExit(f"{name}: plan failed, see {work / f'{name}.plan.log'}")
    record = json.loads(plan_file.with_suffix(".json").read_text())
    wall, peak, code = timed_child(
        [*tunelab, "train", "--config", str(plan_file), "--no-progress"],
        work / f"{name}.train.log",
    )
    if code != 0:
        raise SystemExit(f"{name}: training failed, see {work / f'{name}.train.log'}")
    metrics = json.loads((out / "metrics.json").read_text())
    est = record["estimate"]
    row = {
        "case": name,
        "command": f"tunelab plan {' '.join(CASES[name])}",
        "task": record["config"]["task"],
        "model": record["config"]["model"],
        "method": record["config"]["method"],
        "cuts": [c["what"] for c in record["cuts"]],
        "planning_s": round(plan_s, 1),
        "probe_wall_s": round(record["probe"]["wall_s"], 1),
        "estimated_s": est["total_s"],
        "measured_s": round(wall, 1),
        "time_error": round((est["total_s"] - wall) / wall, 3),
        "estimated_train_s": est["train_s"],
        "measured_train_s": round(metrics["training"]["train_seconds"], 1),
        "estimated_peak_mb": est["peak_mb"],
        "measured_peak_mb": round(peak, 1),
        "memory_error": round((est["peak_mb"] - peak) / peak, 3),
        "steps": est["steps"],
        "test_metric": {k: v for k, v in metrics.get("test", {}).items() if k != "n"},
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    from tunelab.machine import describe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", default=str(ROOT / "bench/results/plan.json"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        for name in a.cases:
            rows.append(run_case(name, Path(tmp)))
    within = [abs(r["time_error"]) <= 0.25 and abs(r["memory_error"]) <= 0.25 for r in rows]
    result = {
        "machine": describe(),
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/plan.py",
        "cases": rows,
        "all_within_25_percent": all(within),
    }
    Path(a.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
