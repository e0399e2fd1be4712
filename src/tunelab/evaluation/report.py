"""``report.html``: a self-contained page (images embedded) with the training curves, the
metrics and the task's own figures and tables, plus the same plots as PNG files under ``plots/``.

For single-label classification it also shows what analysts look for first (as Ludwig's
``visualize`` does): the most confident mistakes, a reliability (calibration) diagram with the
expected calibration error, and one precision-recall curve per class.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from tunelab.plots import plot_curves, plot_pr_curves, plot_reliability
from tunelab.runs import RunInfo

MISTAKES = 15  # rows of the most-confident-mistakes table


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[tuple], head: tuple) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _fields(rows: list[tuple]) -> str:
    """A two-column table of (name, value) rows: names as row headers, no header row."""
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows
    )
    return f'<table class="fields">{body}</table>'


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classifier_views(
    plots: Path, split: str, logits, targets, labels: list[str], texts: list
) -> tuple[list[str], list[tuple[str, str]]]:
    """The mistakes table (HTML parts) and the calibration and precision-recall figures of a
    single-label classifier's ``split``."""
    probs = _softmax(np.asarray(logits, dtype=np.float64))
    y = np.asarray(targets)
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    parts = []
    wrong = np.flatnonzero(pred != y)
    if len(texts) == len(y):
        order = wrong[np.argsort(-conf[wrong], kind="stable")][:MISTAKES]
        rows = [(str(texts[i])[:300], labels[y[i]], labels[pred[i]], float(conf[i])) for i in order]
        parts.append(
            f"<h2>Most confident mistakes ({split}: {len(wrong)} of {len(y)} wrong)</h2>"
            + _table(rows, ("text", "true label", "predicted", "score"))
        )
    ece = plot_reliability(conf, pred == y, f"reliability ({split})", plots / "reliability.png")
    plot_pr_curves(probs, y, labels, f"precision-recall per class ({split})", plots / "pr.png")
    figures = [
        (f"Reliability diagram ({split}; expected calibration error {ece:.3f})", "reliability.png"),
        (f"Precision-recall per class ({split})", "pr.png"),
    ]
    return parts, figures


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
        final: (split name, logits, encoded targets, spec, texts) of the split the task plots
            show; texts may be empty.
    """
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    plot_curves(history, metric, plots / "curves.png")
    split, logits, targets, spec, texts = final
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
        ("training time", f"{tr['train_seconds']:.1f} s"),
        ("examples/s", f"{tr['examples_per_s']:.1f}"),
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
    if task.single_label and task.probabilities == "softmax" and spec.get("labels"):
        more, figs = classifier_views(plots, split, logits, targets, spec["labels"], texts)
        parts += more
        figures += figs
    for title, name in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>{_img(plots / name, title)}")
    body = "\n".join(parts)
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>tunelab report: {html.escape(info.task)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px}}
table.fields th{{text-align:left;background:#f6f6f6;font-weight:normal}}
img{{max-width:100%}}</style></head><body>
<h1>tunelab report</h1>
{_fields(summary)}
{body}
</body></html>
"""
    out = run_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out
