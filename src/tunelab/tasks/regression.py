"""Regression: one number per text (a rating, a score). Targets are standardised for training
(z = (y - mean) / std, from the training split) and mapped back for metrics and predictions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tunelab.data_policy import shown
from tunelab.errors import ConfigError, DataError
from tunelab.tasks.base import Task, register_task
from tunelab.tasks.examples import Examples, classifier_head, read_labelled

PEFT_TASK_TYPE = "SEQ_CLS"
DESCRIPTION = "one number per text (rating, score); columns: text, label (numeric)"
DEFAULT_METRIC = "rmse"
SUMMARY_METRICS = ("mae", "rmse", "r2", "pearson", "spearman", "baseline_mae", "n")
LOSSES = ("mse", "huber")


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    """Read texts and numeric targets; a non-numeric target names file, line and field (a
    missing one, NaN included, follows the reading policy: refused, or its row dropped)."""

    def number(value: object, line: int) -> float:
        try:
            x = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):  # OverflowError: a 400-digit integer
            raise DataError(
                path, line, f"not a number: {shown(value)}", field=label_column
            ) from None
        if not math.isfinite(x):
            raise DataError(path, line, f"not a finite number: {shown(value)}", field=label_column)
        return x

    return read_labelled(path, text_column, label_column, number)


def make_spec(train: Examples, options: dict) -> dict:
    y = np.asarray(train.labels, dtype=np.float64)
    loss = options.get("regression_loss", "mse")
    if loss not in LOSSES:
        raise ConfigError(f"key 'regression_loss' = {loss!r}: use {' or '.join(LOSSES)}")
    std = float(y.std())
    if len(y) < 2 or std == 0.0:
        raise DataError(train.path, None, "regression needs at least two different target values")
    return {"mean": float(y.mean()), "std": std, "loss": loss}


def encode_targets(ex: Examples, spec: dict, label_column: str) -> list[float]:
    """Standardised targets (what the head learns to output)."""
    return [(float(v) - spec["mean"]) / spec["std"] for v in ex.labels]


def build_model(path: str, spec: dict, **load_kwargs):
    """A pretrained encoder with a single-output head."""
    from transformers import AutoModelForSequenceClassification

    from tunelab.models.weights import load_pretrained

    return load_pretrained(
        AutoModelForSequenceClassification,
        path,
        num_labels=1,
        problem_type="regression",
        **load_kwargs,
    )


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, spec: dict) -> torch.Tensor:
    # logits: (batch, 1) in standardised units; targets: (batch,)
    pred = logits.float().squeeze(-1)
    if spec.get("loss") == "huber":
        return torch.nn.functional.huber_loss(pred, targets.float(), delta=1.0)
    return torch.nn.functional.mse_loss(pred, targets.float())


def _unscale(logits: np.ndarray, spec: dict) -> np.ndarray:
    return logits.reshape(-1).astype(np.float64) * spec["std"] + spec["mean"]


def compute_metrics(logits: np.ndarray, targets: np.ndarray, spec: dict) -> dict:
    """MAE, RMSE, R^2, Pearson and Spearman in the target's own units, and the MAE/RMSE of the
    baseline that always predicts the training mean."""
    from scipy.stats import pearsonr, spearmanr

    pred = _unscale(logits, spec)
    true = targets.astype(np.float64) * spec["std"] + spec["mean"]
    err = pred - true
    ss_tot = float(((true - true.mean()) ** 2).sum())
    const = len(true) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r2": float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else None,
        "pearson": None if const else float(pearsonr(pred, true)[0]),
        "spearman": None if const else float(spearmanr(pred, true)[0]),
        "loss": float((((pred - true) / spec["std"]) ** 2).mean()),
        "baseline_mae": float(np.abs(true - spec["mean"]).mean()),
        "baseline_rmse": float(np.sqrt(((true - spec["mean"]) ** 2).mean())),
        "n": int(len(true)),
    }


def decode(logits: np.ndarray, spec: dict) -> list[dict]:
    """Per text: ``{"value": prediction in the target's units}``."""
    return [{"value": float(v)} for v in _unscale(logits, spec)]


def report_figures(
    plots: Path, split: str, logits: np.ndarray, targets: np.ndarray, spec: dict, metrics: dict
) -> list[tuple[str, str]]:
    from tunelab.plots import plt

    pred = _unscale(logits, spec)
    true = targets * spec["std"] + spec["mean"]
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(true, pred, s=6, alpha=0.5)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="perfect")
    ax.axhline(spec["mean"], color="C3", lw=1, label="baseline (training mean)")
    ax.set_xlabel("true"), ax.set_ylabel("predicted"), ax.legend(fontsize=8)
    ax.set_title(f"predicted vs true ({split})")
    fig.tight_layout()
    fig.savefig(plots / "scatter.png", dpi=110)
    plt.close(fig)
    return [(f"Predicted vs true ({split})", "scatter.png")]


def report_tables(metrics: dict) -> list[tuple[str, tuple, list[tuple]]]:
    keys = ("mae", "rmse", "r2", "pearson", "spearman")
    return [
        (
            "Against the training-mean baseline",
            ("", "model", "baseline"),
            [
                ("MAE", metrics["mae"], metrics["baseline_mae"]),
                ("RMSE", metrics["rmse"], metrics["baseline_rmse"]),
            ]
            + [(k, metrics[k], "") for k in keys[2:]],
        )
    ]


TASK = register_task(
    Task(
        "regression",
        DESCRIPTION,
        PEFT_TASK_TYPE,
        DEFAULT_METRIC,
        SUMMARY_METRICS,
        read_examples=read_examples,
        make_spec=make_spec,
        build_model=build_model,
        head_module_names=classifier_head,
        loss_fn=loss_fn,
        report_figures=report_figures,
        report_tables=report_tables,
        encode_targets=encode_targets,
        compute_metrics=compute_metrics,
        decode=decode,
        sequence_level=True,
    )
)
