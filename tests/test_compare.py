"""`tunelab compare`: one run per method under one budget, a table in markdown/CSV/JSON and a
plot; failures are rows, not crashes; finished runs are reused."""

from __future__ import annotations

import csv
import json

from tunelab.cli import main


def test_compare_tabulates_every_method(learnable_model_dir, toy_data, tmp_path, capsys):

    out = tmp_path / "cmp"
    args = [
        "compare",
        "--model",
        str(learnable_model_dir),
        "--train",
        str(toy_data["train"]),
        "--validation",
        str(toy_data["validation"]),
        "--test",
        str(toy_data["test"]),
        "--methods",
        "full,lora,adapter",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--output-dir",
        str(out),
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    md = (out / "comparison.md").read_text()
    assert md in captured.out
    assert md.count("\n") == 2 + 3 and "| adapter |" in md
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["method"] for r in rows] == ["full", "lora", "adapter"]
    for r in rows:
        metrics = json.loads((out / r["method"] / "metrics.json").read_text())
        assert float(r["accuracy"]) == metrics["test"]["accuracy"]
        assert float(r["peak_memory_mb"]) > 50 and float(r["weights_mb"]) > 0
    full, lora = rows[0], rows[1]
    assert float(full["trainable_pct"]) == 100.0 > float(lora["trainable_pct"])
    assert float(full["weights_mb"]) > float(lora["weights_mb"])
    assert float(lora["learning_rate"]) == 1e-3  # each method at its own default
    assert (out / "comparison.png").stat().st_size > 1000

    # a second call reuses the finished runs
    assert main(args) == 0
    assert captured.err.count("training full") == 1
    assert "reusing the finished run" in capsys.readouterr().err


def test_compare_rejects_a_method_that_does_not_fit_the_task(
    tiny_model_dir, toy_data, tmp_path, capsys
):
    assert (
        main(
            [
                "compare",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(toy_data["train"]),
                "--validation",
                str(toy_data["validation"]),
                "--methods",
                "lora,prompt-tuning",
                "--task",
                "token-classification",
                "--output-dir",
                str(tmp_path / "c"),
            ]
        )
        == 2
    )
    assert (
        "method 'prompt-tuning' does not support task 'token-classification'"
        in capsys.readouterr().err
    )


def test_a_failed_method_is_a_row_not_a_crash(tmp_path):
    from tunelab.evaluation import compare

    rows = [compare.collect(tmp_path, "bitfit", "method 'bitfit' needs bias terms", ["accuracy"])]
    md = compare.to_markdown(rows, ["accuracy"])
    assert "| bitfit | failed: method 'bitfit' needs bias terms |" in md
    assert "needs bias terms" in compare.to_csv(rows, ["accuracy"])
