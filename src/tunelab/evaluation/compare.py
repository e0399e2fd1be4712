"""``tunelab compare``: train one model per method under the same budget and tabulate what each
costs and gives (markdown + CSV + plot).

Each method trains in its own ``tunelab train`` process, so its peak memory is its own and a
method that fails (say, BitFit on a model without biases) is recorded and the others go on. A
finished run is reused when the comparison is run again (delete it, or pass --overwrite, to
retrain), so an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tunelab.runs import is_run, read_config, read_metrics, read_run

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def weights_size_mb(run_dir: Path) -> float:
    """Size of the weight files a run needs on top of the base model, in MB."""
    return sum(p.stat().st_size for p in run_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES) / 1e6


def run_method(
    config_file: Path, method: str, out: Path, overwrite: bool, echo: Callable[[str], None]
) -> str | None:
    """Train ``method`` into ``out`` in a child process; returns an error line or None."""
    if is_run(out) and not overwrite:
        echo(f"tunelab compare: {method}: reusing the finished run in {out}")
        return None
    cmd = [
        sys.executable,
        "-m",
        "tunelab",
        "train",
        "--config",
        str(config_file),
        "--method",
        method,
        "--output-dir",
        str(out),
        "--overwrite",
    ]
    echo(f"tunelab compare: training {method}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        echo("  " + line.rstrip())
        if line.strip():
            last = line.strip()
    if proc.wait() != 0:
        return last.removeprefix("tunelab: error: ") or f"exit code {proc.returncode}"
    return None


def collect(out: Path, method: str, error: str | None, metric_keys: list[str]) -> dict:
    """One table row for ``method`` from its run folder."""
    row: dict = {"method": method}
    run = out / method
    if error:
        return {**row, "error": error}
    info = read_run(run)
    metrics = read_metrics(run)
    split = "test" if "test" in metrics else "validation"
    tr = metrics["training"]
    p = info.parameters or {"trainable": 0, "total": 1}
    row.update(
        {
            "trainable_params": p["trainable"],
            "trainable_pct": 100.0 * p["trainable"] / p["total"],
            "weights_mb": weights_size_mb(run),
            "peak_memory_mb": tr.get("peak_memory_mb"),
            "train_seconds": tr["train_seconds"],
            "examples_per_s": tr["examples_per_s"],
            "learning_rate": _learning_rate(run),
            "split": split,
        }
    )
    for k in metric_keys:
        row[k] = metrics[split].get(k)
    return row


def _learning_rate(run: Path) -> float | None:
    cfg = read_config(run)
    if cfg.get("learning_rate"):
        return cfg["learning_rate"]
    from tunelab.methods import get_method

    return get_method(cfg["method"]).default_learning_rate


COLUMNS = [
    ("method", "method", "{}"),
    ("trainable_params", "trainable params", "{:,}"),
    ("trainable_pct", "trainable %", "{:.3g}"),
    ("weights_mb", "run weights (MB)", "{:.2f}"),
    ("peak_memory_mb", "peak memory (MB)", "{:,.0f}"),
    ("train_seconds", "training (s)", "{:.0f}"),
    ("examples_per_s", "examples/s", "{:.1f}"),
    ("learning_rate", "lr", "{:g}"),
]


def to_markdown(rows: list[dict], metric_keys: list[str]) -> str:
    cols = COLUMNS + [(k, k.replace("_", " "), "{:.4f}") for k in metric_keys]
    lines = [
        "| " + " | ".join(c[1] for c in cols) + " |",
        "|" + "|".join("---" if i == 0 else "--:" for i in range(len(cols))) + "|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error']} |" + " |" * (len(cols) - 2))
            continue
        cells = [fmt.format(r[k]) if r.get(k) is not None else "" for k, _, fmt in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], metric_keys: list[str]) -> str:
    keys = [c[0] for c in COLUMNS] + ["split"] + metric_keys + ["error"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot(rows: list[dict], metric: str, out: Path) -> None:
    """Main metric vs. trainable share and training time, one point per method."""
    from tunelab.plots import plt

    ok = [r for r in rows if "error" not in r and r.get(metric) is not None]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label, log in (
        (axes[0], "trainable_pct", "trainable parameters (%)", True),
        (axes[1], "train_seconds", "training time (s)", False),
    ):
        for r in ok:
            ax.scatter(r[key], r[metric], s=40)
            ax.annotate(
                r["method"],
                (r[key], r[metric]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{ok[0]['split'] if ok else ''} {metric}")
        ax.grid(alpha=0.3)
    fig.suptitle("tunelab compare: what each method costs and gives")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
