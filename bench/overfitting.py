"""Small-data techniques side by side: baseline vs label smoothing, FGM, PGD, EDA, R-Drop and a
3-model ensemble, at N training examples per class, over several seeds; the test split is
always the full bundled one.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/overfitting.py --lang en --per-class 32,128 \\
        --seeds 1,2,3 --out bench/results/overfitting_en.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/overfitting.py --lang en --per-class 1000 \\
        --seeds 1 --techniques baseline,label_smoothing,fgm,eda,rdrop \\
        --out bench/results/overfitting_en_1000.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/overfitting.py --lang zh --per-class 128 \\
        --seeds 1 --techniques baseline,eda,fgm --epochs 2 \\
        --out bench/results/overfitting_zh.json

Every run is `tunelab train` with the same settings but the technique's flags. Validation is
the first 300 rows of the validation split (model selection only); epochs shrink as data
grows (10 at 32 per class, 5 at 128, 1 at 1,000; Chinese on gemma3-270m: 2). The ensemble averages
the baseline runs of
the seeds (one number, no spread). Results are appended to --out as they finish, so a run cut
short keeps what it measured.
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
sys.path.insert(0, str(ROOT))
from bench.splits import first_rows  # noqa: E402

BIN = Path(sys.executable).parent
TECHNIQUES = {
    "baseline": [],
    "label_smoothing": ["--label-smoothing", "0.1"],
    "fgm": ["--adversarial", "fgm", "--adv-epsilon", "1.0"],
    "pgd": [
        "--adversarial",
        "pgd",
        "--adv-epsilon",
        "1.0",
        "--adv-steps",
        "2",
        "--adv-alpha",
        "0.5",
    ],
    "eda": ["--augment", "eda", "--augment-copies", "2", "--augment-alpha", "0.1"],
    "rdrop": ["--rdrop-alpha", "1.0"],
}
SETUP = {
    "en": {
        "model": "minilm-l6",
        "data": "data/en_sentiment",
        "method": "full",
        "extra": ["--batch-size", "16"],
    },
    "zh": {
        "model": "gemma3-270m",
        "data": "data/zh_sentiment",
        "method": "lora",
        "extra": ["--batch-size", "16", "--max-length", "96"],
        "epochs": 2,
    },
}  # a 268M model at about 5 examples/s: CPU time is the limit
EPOCHS = {32: 10, 128: 5, 1000: 1}


def run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", choices=sorted(SETUP), default="en")
    ap.add_argument("--per-class", default="32,128,1000")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--techniques", default=",".join(TECHNIQUES))
    ap.add_argument("--no-ensemble", action="store_true")
    ap.add_argument("--epochs", type=float, help="override the per-size epochs")
    ap.add_argument("--work", default="/tmp/tunelab-overfitting")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    setup = SETUP[a.lang]
    work = Path(a.work) / a.lang
    work.mkdir(parents=True, exist_ok=True)
    data = ROOT / setup["data"]
    val = first_rows(data / "validation.csv", work / "validation300.csv")
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.is_file() else {"runs": [], "summary": {}}
    done = {(r["per_class"], r["technique"], r["seed"]) for r in results["runs"]}

    def save() -> None:
        results["summary"] = summarise(results["runs"])
        out.write_text(json.dumps(results, indent=2) + "\n")

    seeds = [int(s) for s in a.seeds.split(",")]
    for n in (int(x) for x in a.per_class.split(",")):
        for tech in a.techniques.split(","):
            for seed in seeds:
                if (n, tech, seed) in done:
                    continue
                run_dir = work / f"{n}-{tech}-{seed}"
                t0 = time.perf_counter()
                run(
                    [
                        str(BIN / "tunelab"),
                        "train",
                        "--model",
                        setup["model"],
                        "--method",
                        setup["method"],
                        "--train",
                        str(data / "train.csv"),
                        "--validation",
                        str(val),
                        "--test",
                        str(data / "test.csv"),
                        "--max-train-examples-per-class",
                        str(n),
                        "--epochs",
                        str(a.epochs or setup.get("epochs") or EPOCHS.get(n, 3)),
                        "--seed",
                        str(seed),
                        "--output-dir",
                        str(run_dir),
                        "--overwrite",
                        "--no-progress",
                        "--report-to",
                        "none",
                        "--save-steps",
                        "0",
                        *setup["extra"],
                        *TECHNIQUES[tech],
                    ]
                )
                m = json.loads((run_dir / "metrics.json").read_text())
                results["runs"].append(
                    {
                        "per_class": n,
                        "technique": tech,
                        "seed": seed,
                        "test_accuracy": m["test"]["accuracy"],
                        "test_macro_f1": m["test"]["macro_f1"],
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                )
                print(json.dumps(results["runs"][-1]), flush=True)
                save()
        base = [work / f"{n}-baseline-{s}" for s in seeds]
        if (
            not a.no_ensemble
            and len(seeds) >= 3
            and all(b.is_dir() for b in base)
            and (n, "ensemble", 0) not in done
        ):
            ens = work / f"{n}-ensemble"
            run(
                [
                    str(BIN / "tunelab"),
                    "ensemble",
                    "--model-dirs",
                    *map(str, base[:3]),
                    "--output",
                    str(ens),
                    "--overwrite",
                    "--eval-data",
                    str(data / "test.csv"),
                ]
            )
            m = json.loads((ens / "metrics.json").read_text())["ensemble"]
            results["runs"].append(
                {
                    "per_class": n,
                    "technique": "ensemble",
                    "seed": 0,
                    "test_accuracy": m["accuracy"],
                    "test_macro_f1": m["macro_f1"],
                    "seconds": None,
                }
            )
            print(json.dumps(results["runs"][-1]), flush=True)
            save()
    save()
    print(table(results["summary"]))


def summarise(runs: list[dict]) -> dict:
    out: dict = {}
    for r in runs:
        out.setdefault(str(r["per_class"]), {}).setdefault(r["technique"], []).append(
            r["test_accuracy"]
        )
    return {
        n: {
            t: {
                "mean": statistics.mean(v),
                "sd": statistics.stdev(v) if len(v) > 1 else None,
                "n": len(v),
            }
            for t, v in by.items()
        }
        for n, by in out.items()
    }


def table(summary: dict) -> str:
    sizes = sorted(summary, key=int)
    techs = list(dict.fromkeys(t for n in sizes for t in summary[n]))
    lines = [
        "| technique | " + " | ".join(f"{n} per class" for n in sizes) + " |",
        "|---|" + "--:|" * len(sizes),
    ]
    for t in techs:
        cells = []
        for n in sizes:
            s = summary[n].get(t)
            if s is None:
                cells.append("-")
                continue
            base = summary[n].get("baseline", {}).get("mean")
            diff = (
                f" ({100 * (s['mean'] - base):+.1f})"
                if base is not None and t != "baseline"
                else ""
            )
            sd = f" ± {100 * s['sd']:.1f}" if s["sd"] is not None else ""
            cells.append(f"{100 * s['mean']:.1f}{sd}{diff}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
