"""Foundation benchmark: tunelab (full, LoRA) against a plain Hugging Face Trainer script.

Same model (MiniLM-L6), data (bundled English sentiment), epochs, batch size, learning rate and
max length. Runs one after the other on an otherwise idle machine and prints a markdown table.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/foundation.py --epochs 3 \
        --out bench/results/foundation.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str]) -> tuple[str, float]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r.stdout, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", default="3")
    ap.add_argument("--runs", default="/tmp/tunelab-bench")
    ap.add_argument("--out")
    a = ap.parse_args()
    d = "data/en_sentiment"
    rows = []
    out, wall = run(
        [
            str(BIN / "python"),
            "bench/reference_trainer.py",
            "--epochs",
            a.epochs,
            "--batch-size",
            "32",
            "--learning-rate",
            "5e-5",
            "--max-length",
            "128",
        ]
    )
    ref = json.loads(out.strip().splitlines()[-1])
    rows.append(
        {
            "setup": "HF Trainer (reference), full, lr 5e-5",
            "test_accuracy": ref["test_accuracy"],
            "train_seconds": ref["train_seconds"],
            "examples_per_s": ref["examples_per_s"],
            "wall_seconds": wall,
        }
    )
    for method, lr in (("full", ["--learning-rate", "5e-5"]), ("lora", [])):
        run_dir = Path(a.runs) / method
        out, wall = run(
            [
                str(BIN / "tunelab"),
                "train",
                "--model",
                "minilm-l6",
                "--train",
                f"{d}/train.csv",
                "--validation",
                f"{d}/validation.csv",
                "--test",
                f"{d}/test.csv",
                "--method",
                method,
                "--epochs",
                a.epochs,
                "--batch-size",
                "32",
                "--max-length",
                "128",
                *lr,
                "--output-dir",
                str(run_dir),
                "--overwrite",
                "--no-progress",
            ]
        )
        s = json.loads(out.splitlines()[0])
        m = json.loads((run_dir / "metrics.json").read_text())
        size = sum(f.stat().st_size for f in run_dir.glob("*.safetensors")) / 1e6
        rows.append(
            {
                "setup": f"tunelab, {method}, lr {'5e-5' if lr else '1e-3 (default)'}",
                "test_accuracy": s["test"]["accuracy"],
                "test_macro_f1": s["test"]["macro_f1"],
                "train_seconds": m["training"]["train_seconds"],
                "examples_per_s": m["training"]["examples_per_s"],
                "best_epoch": m["training"]["best_epoch"],
                "weights_mb": round(size, 1),
                "wall_seconds": wall,
            }
        )
    print("| setup | test accuracy | train time (s) | examples/s | weights on disk (MB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setup']} | {r['test_accuracy']:.4f} | {r['train_seconds']:.0f} | "
            f"{r['examples_per_s']:.1f} | {r.get('weights_mb', 90.9)} |"
        )
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
