"""Few-shot classification: SetFit (`tunelab train --method setfit`) against our full fine-tuning
at the same sizes, the `setfit` package itself where it is installed, and the full-data accuracy
of the same backbone (MiniLM-L6, English sentiment).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot.py --per-class 8,16,32 --seeds 1,2,3 \\
        --setfit-python /tmp/sfenv/bin/python --out bench/results/fewshot.json

Every tunelab run is a separate `tunelab train` process on the same N examples per class drawn
with the seed (`--max-train-examples-per-class`), validated on the first 300 validation rows
(model selection only) and tested on all 1,008 test sentences. Full fine-tuning uses the
small-data settings of bench/overfitting.py (batch 16, 10 epochs); SetFit its defaults (40
similar and 40 dissimilar pairs per text, one pass, encoder lr 2e-5, then the head).
"Training seconds" for SetFit are its contrastive stage plus the head's fit and loop; for full
fine-tuning the loop's; "wall" is the whole command, model loading and test scoring included.
The `setfit` package (`--setfit-python`, a Python with `pip install setfit`) trains its
SetFitModel from the same local MiniLM folder with its defaults (num_iterations 20, batch 16,
1 epoch), in its own process, and is scored on the same test sentences. Results are appended to
--out as they finish.
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
DATA = ROOT / "data/en_sentiment"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
from bench.splits import first_rows  # noqa: E402

from tunelab.machine import describe as describe_machine  # noqa: E402

SETUPS = {
    "setfit": ["--method", "setfit", "--epochs", "1"],
    "full": ["--method", "full", "--epochs", "10", "--batch-size", "16"],
}

PACKAGE = r"""
import csv, json, random, sys, time
from setfit import SetFitModel, Trainer, TrainingArguments
from datasets import Dataset
model_dir, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def read(p):
    with open(p, encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in csv.DictReader(f)]
train, test = read(sys.argv[4]), read(sys.argv[5])
rng = random.Random(seed)
labels = sorted({y for _, y in train})
pick = []
for lab in labels:
    rows = [r for r in train if r[1] == lab]
    pick += rng.sample(rows, n)
ids = {lab: i for i, lab in enumerate(labels)}
ds = Dataset.from_dict({"text": [t for t, _ in pick], "label": [ids[y] for _, y in pick]})
model = SetFitModel.from_pretrained(model_dir)
args = TrainingArguments(
    batch_size=16, num_epochs=1, num_iterations=20, seed=seed, report_to="none"
)
t0 = time.perf_counter()
Trainer(model=model, args=args, train_dataset=ds).train()
seconds = time.perf_counter() - t0
pred = model.predict([t for t, _ in test])
acc = sum(int(p) == ids[y] for p, (_, y) in zip(pred, test)) / len(test)
print(json.dumps({"test_accuracy": acc, "train_seconds": round(seconds, 1)}))
"""


def validation300(work: Path) -> Path:
    return first_rows(DATA / "validation.csv", work / "validation300.csv")


def ours(setup: str, n: int | None, seed: int, val: Path, work: Path) -> dict:
    run_dir = work / f"{setup}-{n or 'all'}-{seed}"
    args = [str(BIN / "tunelab"), "train", "--model", "minilm-l6"]
    args += ["--train", str(DATA / "train.csv"), "--validation", str(val)]
    args += ["--test", str(DATA / "test.csv"), "--seed", str(seed)]
    args += ["--output-dir", str(run_dir), "--overwrite", "--no-progress", "--report-to", "none"]
    args += ["--save-steps", "0"]
    if n is not None:
        args += ["--max-train-examples-per-class", str(n), *SETUPS[setup]]
    else:  # the full-data reference: the usual settings, one epoch
        args += ["--method", "full", "--epochs", "1", "--batch-size", "32"]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "tunelab.json").read_text())
    stage = info.get("method_details") or {}
    train_s = m["training"]["train_seconds"] + stage.get("contrastive_seconds", 0.0)
    return {
        "test_accuracy": m["test"]["accuracy"],
        "train_seconds": round(train_s, 1),
        "wall_seconds": round(wall, 1),
        "precision": info.get("precision"),
        "stage": stage or None,
    }


def package(python: str, n: int, seed: int, work: Path) -> dict:
    from tunelab.models.registry import resolve_model

    script = work / "setfit_package.py"
    script.write_text(PACKAGE)
    path = resolve_model("minilm-l6").path
    args = [python, str(script), path, str(n), str(seed)]
    args += [str(DATA / "train.csv"), str(DATA / "test.csv")]
    t0 = time.perf_counter()
    # in the work folder: the package's Trainer writes its checkpoints/ where it runs
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=work)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return r


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for r in runs:
        out.setdefault(str(r["per_class"]), {}).setdefault(r["setup"], []).append(r)
    summary: dict = {}
    for n, setups in out.items():
        for setup, rs in setups.items():
            accs = [r["test_accuracy"] for r in rs]
            summary.setdefault(n, {})[setup] = {
                "seeds": len(rs),
                "test_accuracy_mean": round(statistics.mean(accs), 4),
                "test_accuracy_sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
                "train_seconds_mean": round(statistics.mean(r["train_seconds"] for r in rs), 1),
                "wall_seconds_mean": round(statistics.mean(r["wall_seconds"] for r in rs), 1),
            }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-class", default="8,16,32")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--setups", default="setfit,full")
    ap.add_argument("--full-data-seeds", default="1", help="seeds of the full-data reference")
    ap.add_argument("--setfit-python", help="a Python with the setfit package installed")
    ap.add_argument("--work", default="/tmp/tunelab-fewshot")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    val = validation300(work)
    out = Path(a.out)
    res = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    res["machine"] = describe_machine()
    res["command"] = "HF_HUB_OFFLINE=1 .venv/bin/python bench/fewshot.py " + " ".join(sys.argv[1:])
    done = {(r["per_class"], r["setup"], r["seed"]) for r in res["runs"]}

    def record(n, setup: str, seed: int, r: dict) -> None:
        res["runs"].append({"per_class": n, "setup": setup, "seed": seed, **r})
        print(json.dumps(res["runs"][-1]), flush=True)
        res["summary"] = summarise(res["runs"])
        out.write_text(json.dumps(res, indent=2) + "\n")

    seeds = [int(s) for s in a.seeds.split(",")]
    for seed in (int(s) for s in a.full_data_seeds.split(",") if s):
        if ("all", "full", seed) not in done:
            record("all", "full", seed, ours("full", None, seed, val, work))
    for n in (int(x) for x in a.per_class.split(",")):
        for seed in seeds:
            for setup in a.setups.split(","):
                if (n, setup, seed) not in done:
                    record(n, setup, seed, ours(setup, n, seed, val, work))
            if a.setfit_python and (n, "setfit-package", seed) not in done:
                try:
                    record(n, "setfit-package", seed, package(a.setfit_python, n, seed, work))
                except subprocess.CalledProcessError as e:
                    print(f"setfit package failed: {e.stderr[-2000:]}", file=sys.stderr)
    full = res["summary"].get("all", {}).get("full", {}).get("test_accuracy_mean")
    if full:
        for setups in res["summary"].values():
            for s in setups.values():
                s["of_full_data"] = round(s["test_accuracy_mean"] / full, 4)
        out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["summary"], indent=2))


if __name__ == "__main__":
    main()
