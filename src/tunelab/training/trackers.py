"""Experiment trackers fed by the loop's events: TensorBoard event files in the run folder
(default) or an MLflow run in a local file store. Each gets loss, learning rate, throughput
and every numeric evaluation metric, keyed by optimizer step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tunelab.errors import ConfigError

TRACKERS = ("tensorboard", "mlflow", "none")


class TensorBoard:
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, event: dict) -> None:
        prefix = "train" if event["type"] == "train" else "eval"
        for k, v in event.items():
            if (
                k not in ("type", "step")
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
            ):
                self.writer.add_scalar(f"{prefix}/{k}", v, event["step"])

    def close(self) -> None:
        self.writer.close()


class MLflow:
    def __init__(self, store: Path, run_name: str, params: dict[str, Any]) -> None:
        try:
            import mlflow
        except ImportError:
            raise ConfigError(
                "--report-to mlflow needs MLflow: pip install 'tunelab[mlflow]' (or mlflow-skinny)"
            ) from None
        self.mlflow = mlflow
        # a plain folder store needs no database server; MLflow 3 asks to opt in to it
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(store.resolve().as_uri())
        mlflow.set_experiment("tunelab")
        self.run = mlflow.start_run(run_name=run_name)
        mlflow.log_params({k: str(v)[:250] for k, v in params.items()})

    def log(self, event: dict) -> None:
        prefix = "train" if event["type"] == "train" else "eval"
        self.mlflow.log_metrics(
            {
                f"{prefix}_{k}": float(v)
                for k, v in event.items()
                if k not in ("type", "step")
                and isinstance(v, (int, float))
                and not isinstance(v, bool)
            },
            step=event["step"],
        )

    def close(self) -> None:
        self.mlflow.end_run()


def make_tracker(report_to: str, staging_dir: Path, output_dir: Path, params: dict):
    """The tracker for ``report_to``; None for 'none'. MLflow's store is ``mlruns/`` next to
    the run folder (``mlflow ui --backend-store-uri <that folder>``)."""
    if report_to == "tensorboard":
        return TensorBoard(staging_dir)
    if report_to == "mlflow":
        return MLflow(output_dir.parent / "mlruns", output_dir.name, params)
    return None
