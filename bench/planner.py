"""Planner benchmark (issue 24): plan accuracy on the held-out compound requests
(data/plans/test.jsonl: 254 hand-written requests, English and Chinese, written before any
planner was trained), for the rule-based planner and the fine-tuned planner side by side.

Per planner, language and kind (compound / single / refuse):
- function-sequence exact match: the called functions, in order, equal the gold plan's (a
  refusal matches a refusal);
- plan exact match: every step equal (sources, filters with their values, arguments);
- input exact match: the texts taken out of the request equal the gold input;
- refusals: requests no function serves that were refused, and compound/single requests
  wrongly refused;
- valid: plans that pass the catalog check (the constrained decoder makes this 100%);
- planning latency p50/p95 (one request at a time).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/planner.py [--planner runs/planner]
        [--out bench/results/planner.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
TEST = ROOT / "data/plans/test.jsonl"


def calls(plan: list[dict] | None) -> list[str] | None:
    return None if plan is None else [s["call"] for s in plan if "call" in s]


def normal(plan: list[dict] | None):
    """A plan compared by value (2 == 2.0; argument text trimmed)."""
    if plan is None:
        return None
    out = []
    for s in plan:
        if "call" in s:
            args = {k: str(v).strip() for k, v in (s.get("args") or {}).items()}
            out.append(
                ("call", s["call"], str(s.get("over", "input")), tuple(sorted(args.items())))
            )
        else:
            fld, op, value = s["where"]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            out.append(("filter", int(s["filter"]), fld, op, value))
    return out


def score(rows: list[dict], planned: list, seconds: list[float]) -> dict:
    from tunelab.planning.program import PlanError, parse

    out: dict = {}
    for lang in ("en", "zh", "all"):
        for kind in ("compound", "single", "refuse", "all"):
            pick = [
                (r, p) for r, p in zip(rows, planned, strict=True)
                if lang in ("all", r["lang"]) and kind in ("all", r["kind"])
            ]  # fmt: skip
            if not pick:
                continue
            n = len(pick)
            valid = 0
            for _, p in pick:
                try:
                    valid += p.plan is None or bool(parse(p.plan))
                except PlanError:
                    pass
            out[f"{lang}/{kind}"] = {
                "requests": n,
                "function_sequence": sum(calls(r["plan"]) == calls(p.plan) for r, p in pick) / n,
                "plan_exact": sum(normal(r["plan"]) == normal(p.plan) for r, p in pick) / n,
                "input_exact": sum(r["input"] == p.items for r, p in pick if r["input"])
                / max(1, sum(1 for r, _ in pick if r["input"])),
                "refused": sum(p.plan is None for _, p in pick) / n,
                "valid": valid / n,
            }
    out["latency_ms"] = {
        "p50": round(1000 * statistics.median(seconds), 1),
        "p95": round(1000 * sorted(seconds)[int(0.95 * (len(seconds) - 1))], 1),
    }
    return out


def run(rows: list[dict], planner, use_rules: bool) -> tuple[list, list[float]]:
    from tunelab.planning.planner import plan_request

    planned, seconds = [], []
    for r in rows:
        t = time.perf_counter()
        planned.append(plan_request(r["request"], planner, use_rules))
        seconds.append(time.perf_counter() - t)
    return planned, seconds


def main() -> None:
    from tunelab.machine import describe
    from tunelab.planning.planner import model_planner

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--planner", help="a planner run (default: rules only)")
    ap.add_argument("--out", default=str(ROOT / "bench/results/planner.json"))
    ap.add_argument("--show", type=int, default=0, help="print N mistakes per planner")
    ap.add_argument("--test", default=str(TEST), help="requests to score (default: the test set)")
    a = ap.parse_args()
    test = Path(a.test).resolve()
    rows = [json.loads(x) for x in test.read_text(encoding="utf-8").splitlines() if x.strip()]
    test_name = str(test.relative_to(ROOT)) if test.is_relative_to(ROOT) else str(test)
    result: dict = {"machine": describe(), "test_set": test_name,
                    "command": " ".join(["HF_HUB_OFFLINE=1 .venv/bin/python bench/planner.py",
                                         *sys.argv[1:]])}  # fmt: skip
    planners = [("rules", None, True)]
    if a.planner:
        t = time.perf_counter()
        planners.append(("model", model_planner(a.planner), False))
        result["model_load_s"] = round(time.perf_counter() - t, 1)
        result["planner_run"] = a.planner
    for name, planner, use_rules in planners:
        planned, seconds = run(rows, planner, use_rules)
        result[name] = score(rows, planned, seconds)
        shown = 0
        for r, p in zip(rows, planned, strict=True):
            if shown < a.show and normal(r["plan"]) != normal(p.plan):
                print(
                    f"[{name}] {r['id']} {r['request'][:90]!r}\n  gold {r['plan']}\n  got  {p.plan}"
                )
                shown += 1
        brief = {k: v for k, v in result[name].items() if k.endswith("/compound")}
        print(name, json.dumps(brief), result[name]["latency_ms"])
    Path(a.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
