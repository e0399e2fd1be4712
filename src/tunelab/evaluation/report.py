"""``report.html``: a self-contained page (images embedded) with the training curves, the
metrics and the confusion matrix, plus the same plots as PNG files under ``plots/``."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from tunelab.plots import plot_curves
from tunelab.runs import RunInfo


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[tuple], head: tuple) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_report(
    run_dir: Path,
    info: RunInfo,
    metrics: dict,
    history: list[dict],
    metric: str,
    task,
    final: tuple,
) -> Path:
    """Write ``plots/*.png`` and ``report.html`` into ``run_dir``; returns the HTML path.

    Args:
        task: the task record (its ``report_figures`` / ``report_tables`` add task plots).
        final: (split name, logits, encoded targets, spec) of the split the task plots show.
    """
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    plot_curves(history, metric, plots / "curves.png")
    split, logits, targets, spec = final
    figures = [("Training curves", "curves.png")] + task.report_figures(
        plots, split, logits, targets, spec, metrics[split]
    )
    tr = metrics["training"]
    params = info.parameters or {"trainable": 0, "total": 0}
    summary = [
        ("task", info.task),
        ("base model", (info.base_model or {}).get("source")),
        ("method", info.method),
        ("trainable parameters", f"{params['trainable']:,} of {params['total']:,}"),
        ("training time (s)", round(tr["train_seconds"], 1)),
        ("examples/s", round(tr["examples_per_s"], 1)),
        (
            "best checkpoint",
            f"step {tr['best_step']} (validation {metric} "
            f"{_fmt(tr.get(f'best_validation_{metric}'))})",
        ),
    ]
    if info.labels:
        summary.append(("labels", ", ".join(info.labels)))
    splits = [s for s in ("validation", "test") if s in metrics]
    keys = [k for k in task.summary_metrics if k != "n"]
    scores = [(s, *[metrics[s].get(k) for k in keys], metrics[s]["n"]) for s in splits]
    for s, m in metrics.get("before_training", {}).items():  # the base model, for contrast
        scores.append((f"{s}, before fine-tuning", *[m.get(k) for k in keys], m["n"]))
    parts = [f"<h2>Scores</h2>{_table(scores, ('split', *keys, 'examples'))}"]
    ada = (info.method_details or {}).get("adalora")
    if ada:  # where AdaLoRA moved its rank budget
        rows = sorted(ada["final_ranks"].items(), key=lambda kv: -kv[1])
        parts.append(
            f"<h2>AdaLoRA rank allocation</h2><p>total rank "
            f"{ada['total_rank']['initial']} at the start (rank {ada['init_r']} per "
            f"layer), {ada['total_rank']['final']} at the end (target average "
            f"{ada['target_r']})</p>{_table(rows, ('adapted layer', 'final rank'))}"
        )
    for title, head, rows in task.report_tables(metrics[split]):
        parts.append(f"<h2>{html.escape(title)} ({split})</h2>{_table(rows, head)}")
    for title, name in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>{_img(plots / name, title)}")
    body = "\n".join(parts)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>tunelab report: {html.escape(info.task)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px}}
img{{max-width:100%}}</style></head><body>
<h1>tunelab report</h1>
{_table(summary, ("", ""))}
{body}
</body></html>
"""
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
