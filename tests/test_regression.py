"""Regression end to end on the tiny model: numeric targets, normalisation, metrics, errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import tunelab
from conftest import toy_rows, write_csv
from tunelab.cli import main
from tunelab.errors import ConfigError, DataError
from tunelab.tasks import regression


def _rated(n: int, seed: int) -> list[dict]:
    """Toy ratings around +2 (positive cue words) and -2 (negative), in a -4..4 range."""
    rng = random.Random(seed)
    return [
        {
            "text": r["text"],
            "rating": round((2 if r["label"] == "positive" else -2) + rng.uniform(-0.5, 0.5), 3),
        }
        for r in toy_rows(n, seed)
    ]


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    d = tmp_path_factory.mktemp("rated")
    return {
        k: write_csv(d / f"{k}.csv", _rated(n, s), ("text", "rating"))
        for k, n, s in (("train", 96, 1), ("validation", 32, 2), ("test", 32, 3))
    }


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_regression_cli_end_to_end(loss, tiny_model_dir, rated, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "regression",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(rated["train"]),
                "--validation",
                str(rated["validation"]),
                "--test",
                str(rated["test"]),
                "--label-column",
                "rating",
                "--epochs",
                "10",
                "--batch-size",
                "16",
                "--learning-rate",
                "3e-3",
                "--max-length",
                "32",
                "--regression-loss",
                loss,
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    test = summary["test"]
    assert test["mae"] < 0.5 * test["baseline_mae"] and test["pearson"] > 0.9, test
    info = json.loads((out / "tunelab.json").read_text())
    assert info["task"] == "regression" and info["target"]["loss"] == loss
    assert info["target"]["std"] == pytest.approx(
        np.std([r["rating"] for r in _rated(96, 1)]), rel=1e-3
    )
    assert "scatter.png" in {p.name for p in (out / "plots").iterdir()}

    assert main(["evaluate", "--model-dir", str(out), "--data", str(rated["test"])]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["mae"] == pytest.approx(test["mae"]) and {"rmse", "r2", "spearman"} <= set(m)

    model = tunelab.load(out)
    p = model.predict(["great wonderful phone", "awful terrible film"])
    assert set(p[0]) == {"value"} and p[0]["value"] > 1 and p[1]["value"] < -1
    np.testing.assert_array_equal(model.logits(["good"]), tunelab.load(out).logits(["good"]))


def test_non_numeric_target_names_file_line_field(tmp_path):
    f = tmp_path / "r.csv"
    f.write_text("text,rating\nfine,1.5\nmeh,abc\n")
    with pytest.raises(DataError, match=r"r.csv:3: field 'rating': not a number: 'abc'"):
        regression.read_examples(str(f), "text", "rating")
    f.write_text("text,rating\nfine,1.5\nmeh,inf\n")  # NaN is a missing value: test_readers
    with pytest.raises(DataError, match=r"r.csv:3: field 'rating': not a finite number"):
        regression.read_examples(str(f), "text", "rating")


def test_non_numeric_target_via_cli_exit_2(tiny_model_dir, rated, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,rating\ngood,2\nbad,very bad\n")
    assert (
        main(
            [
                "train",
                "--task",
                "regression",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(bad),
                "--validation",
                str(rated["validation"]),
                "--label-column",
                "rating",
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == "tunelab: error: " + f"{bad}:3: field 'rating': not a number: 'very bad'"


def test_constant_targets_and_bad_loss_rejected(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("text,y\na,1\nb,1\n")
    ex = regression.read_examples(str(f), "text", "y")
    with pytest.raises(DataError, match="at least two different target values"):
        regression.make_spec(ex, {})
    f.write_text("text,y\na,1\nb,2\n")
    with pytest.raises(ConfigError, match="regression_loss"):
        regression.make_spec(
            regression.read_examples(str(f), "text", "y"), {"regression_loss": "l1"}
        )


def test_metrics_match_definitions():
    spec = {"mean": 1.0, "std": 2.0}
    true = np.array([-1.0, 0.0, 3.0, 5.0])
    pred = np.array([-0.5, 0.5, 2.0, 6.0])
    m = regression.compute_metrics(((pred - 1) / 2)[:, None], (true - 1) / 2, spec)
    assert m["mae"] == pytest.approx(np.abs(pred - true).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((pred - true) ** 2).mean()))
    assert m["baseline_mae"] == pytest.approx(np.abs(true - 1.0).mean())
    assert m["pearson"] == pytest.approx(np.corrcoef(pred, true)[0, 1])
    assert m["spearman"] == pytest.approx(1.0)
