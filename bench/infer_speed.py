"""Inference speed: tunelab's exports against ``transformers.pipeline``, side by side.

The reference is what a user would otherwise write:
``pipeline("text-classification", model=HF_FOLDER)`` called with ``batch_size=32``. Same
fine-tuned model, same texts (the bundled English sentiment test split, 1,008 sentences), each
variant in its own child process, one after the other on an otherwise idle machine:

- reference: the pipeline on the merged ``hf`` export
- tunelab fp32 and bf16 torch: ``tunelab.load(precision=...)`` on the same ``hf`` export
  (bf16 is what ``auto`` picks on a CPU with AMX or AVX-512 BF16)
- tunelab ONNX fp32, ONNX int8, ONNX int8 with 25% of attention heads pruned

For each: batch throughput (examples/s over all test texts, batch size 32, best of 3 passes
after a warm-up pass), single-request latency (one text per call over 300 calls: p50, p99) and
test accuracy.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/infer_speed.py --run runs/demo \\
        --out bench/results/infer_speed.json

``--run`` is a finished text-classification run folder (``make demo`` writes ``runs/demo``).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))
from tunelab.machine import describe as describe_machine  # noqa: E402

TEST = ROOT / "data/en_sentiment/test.csv"
VARIANTS = {  # name: (export folder, tunelab export flags)
    "transformers.pipeline (reference)": ("hf", ["--format", "hf"]),
    "tunelab, PyTorch fp32": ("hf", None),
    "tunelab, PyTorch bf16": ("hf", None),
    "tunelab, ONNX fp32": ("onnx", ["--format", "onnx"]),
    "tunelab, ONNX int8": ("onnx-int8", ["--format", "onnx", "--quantize", "int8"]),
    "tunelab, ONNX int8, 25% heads pruned": (
        "heads25-int8",
        ["--format", "onnx", "--quantize", "int8", "--prune", "heads", "--sparsity", "0.25"],
    ),
}


def read_test() -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader(open(TEST, encoding="utf-8")))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def measure(predict_batch, predict_one, texts: list[str], gold: list[str]) -> dict:
    """Throughput (best of 3 after a warm-up), single-request p50/p99, accuracy."""
    labels = predict_batch(texts)  # warm-up, and the accuracy
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        predict_batch(texts)
        best = max(best, len(texts) / (time.perf_counter() - t0))
    sample = random.Random(0).sample(texts, 300)
    for t in sample[:20]:
        predict_one(t)
    lat = []
    for t in sample:
        t0 = time.perf_counter()
        predict_one(t)
        lat.append(1000 * (time.perf_counter() - t0))
    lat.sort()
    return {
        "examples_per_s": best,
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[int(0.99 * (len(lat) - 1))],
        "accuracy": sum(a == b for a, b in zip(labels, gold, strict=True)) / len(gold),
    }


def worker(variant: str, folder: str) -> dict:
    texts, gold = read_test()
    if variant.startswith("transformers.pipeline"):
        from transformers import pipeline

        pipe = pipeline("text-classification", model=folder, device="cpu")
        return measure(
            lambda xs: [r["label"] for r in pipe(xs, batch_size=32)], lambda x: pipe(x), texts, gold
        )
    import tunelab

    # PyTorch variants name their precision; ONNX ones run as exported
    m = tunelab.load(folder, precision="bf16" if "bf16" in variant else "fp32")
    return measure(
        lambda xs: [r["label"] for r in m.predict(xs, batch_size=32)],
        lambda x: m.predict(x),
        texts,
        gold,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo", help="finished text-classification run")
    ap.add_argument("--work", default="/tmp/tunelab-infer-speed", help="export folders")
    ap.add_argument("--out")
    ap.add_argument("--worker", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(*a.worker)))
        return
    work = Path(a.work)
    exports = {}
    for folder, flags in VARIANTS.values():
        if flags is None or folder in exports:
            continue
        cmd = [
            str(BIN / "tunelab"),
            "export",
            "--model-dir",
            a.run,
            "--output-dir",
            str(work / folder),
            "--overwrite",
            *flags,
        ]
        if "--quantize" in flags or "--prune" in flags:
            cmd += ["--eval-data", str(TEST)]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if r.returncode:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
        exports[folder] = json.loads((work / folder / "tunelab.json").read_text())["export"]
    rows = []
    for name, (folder, _) in VARIANTS.items():
        r = subprocess.run(
            [str(BIN / "python"), __file__, "--worker", name, str(work / folder)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if r.returncode:
            sys.exit(f"failed: {name}\n{r.stderr[-3000:]}")
        size = sum(exports[folder]["files"].values()) / 1e6
        rows.append({"variant": name, "folder_mb": size, **json.loads(r.stdout.splitlines()[-1])})
        print(f"{name}: {rows[-1]}", file=sys.stderr)
    ref = rows[0]
    for r in rows:
        r["speedup"] = r["examples_per_s"] / ref["examples_per_s"]
        r["accuracy_delta_points"] = 100 * (r["accuracy"] - ref["accuracy"])
    print(
        "| variant | examples/s (batch 32) | x pipeline | single p50 (ms) | single p99 (ms) "
        "| test accuracy | folder (MB) |\n|---|--:|--:|--:|--:|--:|--:|"
    )
    for r in rows:
        print(
            f"| {r['variant']} | {r['examples_per_s']:.0f} | {r['speedup']:.2f}x | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['accuracy']:.4f} | "
            f"{r['folder_mb']:.1f} |"
        )
    if a.out:
        Path(a.out).write_text(
            json.dumps(
                {
                    "machine": describe_machine(),
                    "command": " ".join(sys.argv),
                    "run": a.run,
                    "texts": str(TEST.relative_to(ROOT)),
                    "rows": rows,
                    "exports": exports,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
