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
