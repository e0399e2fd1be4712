"""TensorBoard and MLflow tracking, and `tunelab runs` (list and compare)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tunelab.cli import main


def _train(model, data, out, *extra):
    return main(
        [
            "train",
            "--model",
            str(model),
            "--train",
            str(data["train"]),
            "--validation",
            str(data["validation"]),
            "--test",
            str(data["test"]),
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--learning-rate",
            "3e-3",
            "--max-length",
            "32",
            "--output-dir",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def test_tensorboard_events_hold_loss_and_metrics(tiny_model_dir, toy_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "runs" / "tb"
    assert _train(tiny_model_dir, toy_data, out) == 0
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "train/loss",
        "train/learning_rate",
        "train/examples_per_s",
        "eval/accuracy",
        "eval/macro_f1",
    } <= tags
    evals = [json.loads(x) for x in (out / "train_log.jsonl").open() if '"eval"' in x]
    assert [e.value for e in acc.Scalars("eval/accuracy")] == [e["accuracy"] for e in evals]


def test_mlflow_local_store(tiny_model_dir, toy_data, tmp_path):
    import mlflow

    out = tmp_path / "runs" / "ml"
    assert _train(tiny_model_dir, toy_data, out, "--report-to", "mlflow") == 0
    assert not (out / "tensorboard").exists()
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "runs" / "mlruns").as_uri())
    runs = mlflow.search_runs(experiment_names=["tunelab"], output_format="list")
    assert len(runs) == 1 and runs[0].info.run_name == "ml"
    assert runs[0].data.params["method"] == "full"
    history = mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "eval_accuracy")
    assert [m.step for m in history] == [6, 12]


def test_runs_lists_finished_and_resumable_and_compares(tiny_model_dir, toy_data, tmp_path, capsys):
    root = tmp_path / "runs"
    assert _train(tiny_model_dir, toy_data, root / "a", "--report-to", "none") == 0
    assert (
        _train(
            tiny_model_dir,
            toy_data,
            root / "b",
            "--report-to",
            "none",
            "--method",
            "lora",
            "--learning-rate",
            "1e-2",
        )
        == 0
    )
    faulty = str(Path(__file__).with_name("faulty_train.py"))
    r = subprocess.run(
        [
            sys.executable,
            faulty,
            "kill@4",
            "train",
            "--model",
            str(tiny_model_dir),
            "--train",
            str(toy_data["train"]),
            "--validation",
            str(toy_data["validation"]),
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--save-steps",
            "3",
            "--output-dir",
            str(root / "c"),
            "--no-progress",
        ],
        capture_output=True,
    )
    assert r.returncode == -9
    capsys.readouterr()
    assert main(["runs", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["run", "status", "task"]
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert "finished" in rows["a"] and "test accuracy" in rows["a"] and " full " in rows["a"]
    assert "finished" in rows["b"] and " lora " in rows["b"]
    assert "resumable (step 3)" in rows["c"]
    assert main(["runs", "--compare", str(root / "a"), str(root / "b")]) == 0
    out = capsys.readouterr().out
    assert "method" in out and "full" in out and "lora" in out
    assert "test accuracy" in out and "trainable parameters" in out
