"""Continued pre-training: held-out perplexity before and after `tunelab pretrain`, and what it
is worth downstream: fine-tuning on N labelled examples per class from the base model and from
the pre-trained one, same seeds and settings.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/pretrain.py --per-class 128 --seeds 1,2,3 \\
        --out bench/results/pretrain.json

The raw text is the English reviews' training split without its labels (the domain's
unlabelled text; the test split is never seen): `tunelab pretrain --model minilm-l6` holds out
5% of it for perplexity. Downstream runs are `tunelab train --method full` on
`--max-train-examples-per-class N` with the small-data settings of bench/overfitting.py (5
epochs, batch 16), validated on the first 300 validation rows and tested on all 1,008 test
sentences. Every command runs in its own process, one after the other.
"""

from __future__ import annotations

import argparse
import csv
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
from bench.fewshot import validation300  # noqa: E402

from tunelab.machine import describe as describe_machine  # noqa: E402


def run(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--per-class", type=int, default=128)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--pretrain-epochs", default="3")
    ap.add_argument("--pretrain-lr", default="5e-5")
    ap.add_argument("--work", default="/tmp/tunelab-pretrain")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    with open(DATA / "train.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    raw = work / "reviews.txt"
    raw.write_text("".join(r["text"].replace("\n", " ") + "\n" for r in rows), encoding="utf-8")
    val = validation300(work)

    res: dict = {"machine": describe_machine(), "command": " ".join(sys.argv), "runs": []}
    pre = work / "pretrained"
    seconds = run(
        [str(BIN / "tunelab"), "pretrain", "--model", a.model, "--text", str(raw)]
        + ["--output-dir", str(pre), "--overwrite", "--epochs", a.pretrain_epochs]
        + ["--learning-rate", a.pretrain_lr]
        + ["--no-progress", "--report-to", "none", "--save-steps", "0"]
    )
    m = json.loads((pre / "metrics.json").read_text())
    res["pretrain"] = {
        "documents": len(rows),
        "epochs": float(a.pretrain_epochs),
        "learning_rate": float(a.pretrain_lr),
        "wall_seconds": round(seconds, 1),
        "train_seconds": round(m["training"]["train_seconds"], 1),
        "perplexity_before": m["before_training"]["validation"]["perplexity"],
        "perplexity_after": m["validation"]["perplexity"],
        "held_out_tokens": m["validation"].get("tokens"),
    }
    print(json.dumps(res["pretrain"]), flush=True)
    for seed in (int(s) for s in a.seeds.split(",")):
        for name, model in (("base", a.model), ("pretrained", str(pre))):
            out = work / f"{name}-{seed}"
            secs = run(
                [str(BIN / "tunelab"), "train", "--model", model, "--method", "full"]
                + ["--train", str(DATA / "train.csv"), "--validation", str(val)]
                + ["--test", str(DATA / "test.csv"), "--seed", str(seed)]
                + ["--max-train-examples-per-class", str(a.per_class)]
                + ["--epochs", "5", "--batch-size", "16", "--output-dir", str(out)]
                + ["--overwrite", "--no-progress", "--report-to", "none", "--save-steps", "0"]
            )
            acc = json.loads((out / "metrics.json").read_text())["test"]["accuracy"]
            res["runs"].append({"start": name, "seed": seed, "test_accuracy": acc})
            res["runs"][-1]["wall_seconds"] = round(secs, 1)
            print(json.dumps(res["runs"][-1]), flush=True)
    for name in ("base", "pretrained"):
        accs = [r["test_accuracy"] for r in res["runs"] if r["start"] == name]
        res[f"{name}_mean"] = round(statistics.mean(accs), 4)
        res[f"{name}_sd"] = round(statistics.stdev(accs), 4) if len(accs) > 1 else None
    res["gain_points"] = round(100 * (res["pretrained_mean"] - res["base_mean"]), 2)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("runs", "machine")}, indent=2))


if __name__ == "__main__":
    main()
