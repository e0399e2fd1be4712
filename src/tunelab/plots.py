"""Plot primitives shared by the training report and the tasks' report figures (matplotlib,
headless). Imported only when a report is drawn: loading a model never pulls in matplotlib."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict], metric: str, out: Path) -> None:
    train = [e for e in history if e["type"] == "train"]
    evals = [e for e in history if e["type"] == "eval"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot([e["step"] for e in train], [e["loss"] for e in train], label="training loss")
    if evals and "loss" in evals[0]:
        a.plot(
            [e["step"] for e in evals], [e["loss"] for e in evals], "o-", label="validation loss"
        )
    a.set_xlabel("optimizer step"), a.set_ylabel("loss"), a.legend(), a.grid(alpha=0.3)
    b.plot([e["step"] for e in evals], [e.get(metric) for e in evals], "o-", color="C2")
    b.set_xlabel("optimizer step"), b.set_ylabel(f"validation {metric}"), b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_confusion(cm: dict, title: str, out: Path) -> None:
    labels, m = cm["labels"], cm["matrix"]
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 + 0.7 * n), max(3.4, 1.2 + 0.6 * n)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right"), ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    top = max(max(r) for r in m) or 1
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(m[i][j]),
                ha="center",
                va="center",
                color="white" if m[i][j] > top / 2 else "black",
            )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_f1_bars(f1: dict[str, float], ylabel: str, title: str, out: Path) -> None:
    """One bar per label or entity type, F1 on a 0..1 axis."""
    names = list(f1)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(names) + 1.5), 3.4))
    ax.bar(range(len(names)), [f1[n] for n in names], color="C0")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1), ax.set_ylabel(ylabel), ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_reliability(conf, correct, title: str, out: Path, bins: int = 10) -> float:
    """Accuracy against confidence in equal-width bins (a calibrated model sits on the
    diagonal), with the share of examples per bin; returns the expected calibration error."""
    import numpy as np

    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    acc = np.array([correct[idx == b].mean() if (idx == b).any() else np.nan for b in range(bins)])
    mean_conf = np.array(
        [conf[idx == b].mean() if (idx == b).any() else np.nan for b in range(bins)]
    )
    share = np.array([(idx == b).mean() for b in range(bins)])
    ece = float(np.nansum(share * np.abs(acc - mean_conf)))
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    centers = (edges[:-1] + edges[1:]) / 2
    ax.bar(
        centers, np.nan_to_num(acc), width=1 / bins, edgecolor="white", color="C0", label="accuracy"
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.bar(centers, share, width=1 / bins / 2, color="C1", alpha=0.6, label="share of examples")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)"), ax.set_ylabel("accuracy")
    ax.set_title(f"{title}\nECE {ece:.3f}"), ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return ece


def plot_pr_curves(probs, targets, labels: list[str], title: str, out: Path) -> None:
    """One precision-recall curve per class (one against the rest), average precision in the
    legend."""
    import numpy as np
    from sklearn.metrics import average_precision_score, precision_recall_curve

    y = np.asarray(targets)
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    for k, name in enumerate(labels):
        positive = (y == k).astype(int)
        if positive.sum() == 0:
            continue
        precision, recall, _ = precision_recall_curve(positive, probs[:, k])
        ap = average_precision_score(positive, probs[:, k])
        ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
