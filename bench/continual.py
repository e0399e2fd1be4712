"""Continual fine-tuning: three stages of BBC News topics arriving over time, per strategy, against
retraining from scratch on all the data seen so far.

    make data-bbc
    HF_HUB_OFFLINE=1 .venv/bin/python bench/continual.py --seeds 1,2,3 \\
        --out bench/results/continual.json

Stages (scripts/build_bbc.py): 1 business + entertainment, 2 politics + sports, 3 tech + new
business articles. Stage 1 is one `tunelab train` run per seed (full fine-tuning of MiniLM-L6;
LoRA for lora-per-task, whose stages are LoRA adapters); stages 2 and 3 are
`tunelab train --continue-from ... --continual STRATEGY`, each its own process, with the same
learning rate, epochs and stage order for every strategy. "scratch" retrains the pretrained
model at every stage on the union of every stage's training (and validation) files so far.

Per strategy and seed: the final model's accuracy on every stage's test file and on its
validation file (choices such as the EWC strength are made on validation), the accuracy each
stage had when it was trained, forgetting and backward transfer, and the compute of stages
2 and 3 (training-loop seconds plus EWC's Fisher estimate), also as a ratio to naive's.
Results are appended to --out as they finish.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DATA = ROOT / "data/bbc_topics"
sys.path.insert(0, str(ROOT / "src"))

from tunelab.machine import describe as describe_machine  # noqa: E402

STAGES = (1, 2, 3)
STRATEGIES = {  # name -> (stage-1 method, --continual, extra flags for stages 2-3)
    "naive": ("full", "naive", []),
    "replay": ("full", "replay", []),
    "replay-plain": ("full", "replay", ["--no-replay-balance", "--replay-distill", "0"]),
    "ewc": ("full", "ewc", []),
    "lora-per-task": ("lora", "lora-per-task", []),
}


def split(stage: int, name: str) -> Path:
    return DATA / f"stage{stage}" / f"{name}.jsonl"


def train(args: list[str], out: Path, common: list[str]) -> dict:
    cmd = [str(BIN / "tunelab"), "train", *args, *common, "--output-dir", str(out)]
    cmd += ["--no-progress", "--report-to", "none", "--overwrite"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    cont = m.get("continual", {})
    return {
        "train_seconds": m["training"]["train_seconds"],
        "fisher_seconds": cont.get("fisher_seconds", 0.0),
        "replayed": cont.get("replayed", 0),
        "wall_seconds": time.perf_counter() - t0,
        "test_accuracy": m["test"]["accuracy"],
    }


def stage_args(stage: int, files: dict[int, dict[str, Path]] | None = None) -> list[str]:
    f = files[stage] if files else {s: split(stage, s) for s in ("train", "validation", "test")}
    return [
        "--train",
        str(f["train"]),
        "--validation",
        str(f["validation"]),
        "--test",
        str(f["test"]),
    ]


def accuracies(run: Path, per_task: bool, split_name: str) -> dict[str, float]:
    """The final run's accuracy on every stage's ``split_name`` file."""
    import tunelab

    models = tunelab.load_stages(run) if per_task else None
    final = None if per_task else tunelab.load(run)
    out = {}
    for s in STAGES:
        m = models[str(s)] if models is not None else final
        out[str(s)] = m.evaluate(str(split(s, split_name)))["accuracy"]
    return out


def union(stage: int, work: Path) -> dict[str, Path]:
    """Every stage's files up to ``stage``, concatenated (scratch's training data)."""
    out = {}
    for name in ("train", "validation"):
        f = work / f"upto{stage}_{name}.jsonl"
        f.write_text("".join(split(s, name).read_text() for s in range(1, stage + 1)))
        out[name] = f
    out["test"] = split(stage, "test")
    return out


def run_strategy(
    name: str, seed: int, work: Path, common: list[str], stage1: dict, more: list[str]
) -> dict:
    method, strategy, extra = STRATEGIES[name]
    extra = [*extra, *more]
    prev = stage1[method]["run"]
    cost, steps = 0.0, []
    for s in STAGES[1:]:
        out = work / f"{name}-s{s}"
        args = ["--continue-from", str(prev), "--continual", strategy, *extra, *stage_args(s)]
        r = train(args, out, common)
        steps.append(r)
        cost += r["train_seconds"] + r["fisher_seconds"]
        prev = out
    per_task = strategy == "lora-per-task"
    return summarise(name, seed, prev, per_task, cost, steps, stage1[method]["test_accuracy"])


def run_scratch(seed: int, work: Path, common: list[str], stage1: dict) -> dict:
    cost, steps, last = 0.0, [], work
    for s in STAGES[1:]:
        files = {s: union(s, work)}
        last = work / f"scratch-s{s}"
        r = train(["--model", "minilm-l6", *stage_args(s, files)], last, common)
        steps.append(r)
        cost += r["train_seconds"]
    return summarise("scratch", seed, last, False, cost, steps, stage1["full"]["test_accuracy"])


def summarise(
    name: str, seed: int, run: Path, per_task: bool, cost: float, steps: list, first: float
) -> dict:
    test = accuracies(run, per_task, "test")
    when = {"1": first, "2": steps[0]["test_accuracy"], "3": steps[1]["test_accuracy"]}
    return {
        "strategy": name,
        "seed": seed,
        "test": test,
        "validation": accuracies(run, per_task, "validation"),
        "test_when_trained": when,
        "average_accuracy": statistics.mean(test.values()),
        "backward_transfer": statistics.mean(test[s] - when[s] for s in ("1", "2")),
        "stage1_drop": when["1"] - test["1"],
        "compute_seconds": cost,
        "stages": steps,
    }


def table(results: list[dict]) -> list[dict]:
    """Means over seeds per strategy, with compute as a ratio to naive's."""
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["strategy"], []).append(r)
    naive = statistics.mean(r["compute_seconds"] for r in by["naive"]) if "naive" in by else None
    rows = []
    for name, rs in by.items():
        mean = lambda f, rs=rs: statistics.mean(f(r) for r in rs)  # noqa: E731
        row = {
            "strategy": name,
            "seeds": len(rs),
            **{f"stage{s}_test": mean(lambda r, s=s: r["test"][str(s)]) for s in STAGES},
            "stage1_when_trained": mean(lambda r: r["test_when_trained"]["1"]),
            "stage1_drop": mean(lambda r: r["stage1_drop"]),
            "average_accuracy": mean(lambda r: r["average_accuracy"]),
            "backward_transfer": mean(lambda r: r["backward_transfer"]),
            "compute_seconds": mean(lambda r: r["compute_seconds"]),
        }
        if naive:
            row["compute_vs_naive"] = row["compute_seconds"] / naive
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--strategies", default=",".join([*STRATEGIES, "scratch"]))
    ap.add_argument("--epochs", default="3")
    ap.add_argument("--flags", default="", help="more flags for stages 2 and 3 (trials)")
    ap.add_argument("--label", default="", help="appended to the strategy names (trials)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_continual"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/continual.json")
    a = ap.parse_args()
    if not split(1, "train").is_file():
        raise SystemExit("no data/bbc_topics: run `make data-bbc` first")
    res = {"machine": describe_machine(), "command": " ".join(sys.argv), "runs": []}
    names = a.strategies.split(",")
    for seed in map(int, a.seeds.split(",")):
        work = a.work / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        common = ["--seed", str(seed), "--epochs", a.epochs]
        stage1 = {}
        for method in sorted({STRATEGIES[n][0] if n in STRATEGIES else "full" for n in names}):
            out = work / f"stage1-{method}"
            r = train(["--model", "minilm-l6", "--method", method, *stage_args(1)], out, common)
            stage1[method] = {**r, "run": out}
        for name in names:
            r = (
                run_scratch(seed, work, common, stage1)
                if name == "scratch"
                else run_strategy(name, seed, work, common, stage1, a.flags.split())
            )
            r["strategy"] += a.label
            res["runs"].append(r)
            res["table"] = table(res["runs"])
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1, default=str))
            print(
                f"seed {seed} {name}: test {r['test']} average {r['average_accuracy']:.3f} "
                f"stage-1 drop {r['stage1_drop']:+.3f} compute {r['compute_seconds']:.0f} s",
                flush=True,
            )
    for row in res["table"]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
