"""End to end through the CLI on the tiny model: train, evaluate, predict, bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from conftest import train_args, write_csv
from tunelab.cli import main


def test_run_folder_describes_itself(trained_runs):
    for method, run in trained_runs.items():
        names = {p.name for p in run.iterdir()}
        assert {
            "tunelab.json",
            "config.yaml",
            "metrics.json",
            "train_log.jsonl",
            "report.html",
            "tokenizer.json",
            "plots",
        } <= names, method
        assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
        weights = "model.safetensors" if method == "full" else "adapter_model.safetensors"
        assert weights in names
        info = json.loads((run / "tunelab.json").read_text())
        assert info["method"] == method and info["labels"] == ["negative", "positive"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test"]["accuracy"] >= 0.9, (method, metrics["test"])
        log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
        assert {e["type"] for e in log} == {"train", "eval"}
        assert log[-1]["step"] == metrics["training"]["steps"]
        # curves, confusion matrix, reliability diagram, precision-recall curves
        assert (run / "report.html").read_text().count("data:image/png;base64") == 4
        # no staging folders left next to the run
        assert not [p for p in run.parent.iterdir() if p.name.startswith(".")]


def test_evaluate_prints_one_json_object(trained_runs, toy_data, capsys):
    assert (
        main(
            ["evaluate", "--model-dir", str(trained_runs["full"]), "--data", str(toy_data["test"])]
        )
        == 0
    )
    out = capsys.readouterr().out.strip()
    m = json.loads(out)
    assert set(m) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert set(m["per_class"]) == {"negative", "positive"}
    assert set(m["per_class"]["positive"]) == {"precision", "recall", "f1", "support"}
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == 32
    stored = json.loads((trained_runs["full"] / "metrics.json").read_text())["test"]
    assert m["accuracy"] == pytest.approx(stored["accuracy"])


def test_predict_file_and_stdin(trained_runs, toy_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "preds.jsonl"
    assert (
        main(
            [
                "predict",
                "--model-dir",
                str(trained_runs["lora"]),
                "--input",
                str(toy_data["test"]),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    preds = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(preds) == 32
    p = preds[0]
    assert set(p) == {"text", "label", "score", "probabilities"}
    assert sum(p["probabilities"].values()) == pytest.approx(1.0)
    assert p["score"] == max(p["probabilities"].values())

    stdin = io.TextIOWrapper(io.BytesIO(b"great wonderful film\n\nawful boring phone\n"))
    monkeypatch.setattr(sys, "stdin", stdin)
    capsys.readouterr()
    assert main(["predict", "--model-dir", str(trained_runs["lora"])]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["label"] for x in lines] == ["positive", "negative"]


def test_output_folder_exists_is_refused_and_kept(tiny_model_dir, toy_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(train_args(tiny_model_dir, toy_data, out)) == 2
    err = capsys.readouterr().err
    assert "output folder already exists; pass --overwrite" in err
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "case", ["empty", "missing_column", "empty_text", "non_utf8", "malformed_row"]
)
def test_bad_training_input_exit_2_one_line(case, tiny_model_dir, toy_data, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    content = {
        "empty": b"",
        "missing_column": b"review,label\nfine,positive\n",
        "empty_text": b'text,label\ngood,positive\n"",negative\n',
        "non_utf8": b"text,label\ngood,positive\nna\xefve,negative\n",
        "malformed_row": b"text,label\ngood,positive\nbad,negative,extra\n",
    }[case]
    bad.write_bytes(content)
    expected = {
        "empty": "bad.csv:1: file is empty",
        "missing_column": "bad.csv:1: field 'text': missing column 'text'",
        "empty_text": "bad.csv:3: field 'text': is empty",
        "non_utf8": "bad.csv:3: not valid UTF-8",
        "malformed_row": "bad.csv:3: malformed row",
    }[case]
    out = tmp_path / "run"
    data = dict(toy_data, train=bad)
    assert main(train_args(tiny_model_dir, data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_unknown_label_at_evaluation(trained_runs, tmp_path, capsys):
    f = write_csv(
        tmp_path / "eval.csv",
        [{"text": "good", "label": "positive"}, {"text": "meh", "label": "neutral"}],
    )
    assert main(["evaluate", "--model-dir", str(trained_runs["full"]), "--data", str(f)]) == 2
    err = capsys.readouterr().err
    assert "eval.csv:3: field 'label': label 'neutral' was not seen in training" in err


def test_console_script_error_has_no_traceback(tmp_path):
    """The installed `tunelab` command: exit code 2, one line on stderr."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunelab",
            "evaluate",
            "--model-dir",
            str(tmp_path / "nowhere"),
            "--data",
            "x.csv",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip() == f"tunelab: error: {tmp_path / 'nowhere'}: model folder not found"


def test_listing_commands(capsys):
    for cmd, expect in (
        ("models", "gemma3-270m"),
        ("methods", "lora"),
        ("tasks", "question-answering"),
    ):
        assert main([cmd]) == 0
        assert expect in capsys.readouterr().out


def test_max_examples_keep_the_first_rows(tiny_model_dir, toy_data, tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            train_args(
                tiny_model_dir,
                toy_data,
                out,
                "--epochs",
                "1",
                "--max-train-examples",
                "40",
                "--max-eval-examples",
                "10",
            )
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["n"] == metrics["test"]["n"] == 10
    assert metrics["training"]["examples_seen"] == 40


def test_report_html_is_well_formed_with_real_images(trained_runs):
    """report.html parses, and each embedded image is a real PNG of non-trivial size."""
    import base64
    import re
    from html.parser import HTMLParser

    page = (trained_runs["full"] / "report.html").read_text(encoding="utf-8")
    tags: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append(tag)

    P().feed(page)
    assert tags.count("img") == 4 and "table" in tags
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        png = base64.b64decode(b64)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "Confusion matrix (test)" in page and "accuracy" in page
    # what analysts look for: mistakes, calibration, precision-recall per class
    assert re.search(r"Most confident mistakes \(test: \d+ of 32 wrong\)", page)
    assert re.search(r"Reliability diagram \(test; expected calibration error 0\.\d{3}\)", page)
    assert "Precision-recall per class (test)" in page
    # the summary: no empty header row, seconds and rates with one decimal
    assert "<tr><th></th><th></th></tr>" not in page
    assert re.search(r"<th>training time</th><td>\d+\.\d s</td>", page)
    assert re.search(r"<th>examples/s</th><td>\d+\.\d</td>", page)


def test_report_lists_the_most_confident_mistakes_first_and_measures_calibration(tmp_path):
    import numpy as np

    from tunelab.evaluation.report import classifier_views

    logits = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 4.0], [2.0, 0.0], [0.0, 0.5]])
    targets = np.array([1, 1, 0, 0, 0])  # rows 0, 2 and 4 are wrong
    texts = ["wrong, sure", "right", "wrong, surest", "right", "wrong, unsure"]
    parts, figures = classifier_views(tmp_path, "test", logits, targets, ["neg", "pos"], texts)
    html = parts[0]
    assert "3 of 5 wrong" in html
    order = [html.index(t) for t in ("wrong, surest", "wrong, sure<", "wrong, unsure")]
    assert order == sorted(order)  # by the predicted class's probability, highest first
    assert "<td>wrong, surest</td><td>neg</td><td>pos</td><td>0.9820</td>" in html
    assert [f for _, f in figures] == ["reliability.png", "pr.png"]
    assert all((tmp_path / f).stat().st_size > 5000 for _, f in figures)
    ece = float(figures[0][0].split("error ")[1].rstrip(")"))
    assert 0 < ece < 1
