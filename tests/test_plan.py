"""`tunelab plan`: the data file's task inferred, choices with reasons, a measured probe, budget
cuts, and a plan YAML that `tunelab train --config` runs as written (tiny models)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_tiny_llama, toy_rows, write_csv
from tunelab.cli import main
from tunelab.errors import DataError
from tunelab.planning.inspect import inspect_file

DATA = REPO / "data"


def _only(rows: list[dict], *keys: str) -> list[dict]:
    return [{k: r[k] for k in keys} for r in rows]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One small file per target shape, as a user would bring it."""
    from test_generation import _rows as gen_rows
    from test_question_answering import _row as qa_row
    from test_token_classification import _sentence

    d = tmp_path_factory.mktemp("plan-files")
    rng = random.Random(0)
    rows = toy_rows(80, 7)
    out: dict[str, Path] = {"single": write_csv(d / "reviews.csv", _only(rows, "text", "label"))}
    for r in rows:
        r["labels"] = r["label"] + (";urgent" if rng.random() < 0.4 else "")
    out["multi"] = write_csv(d / "tickets.csv", _only(rows, "text", "labels"), ("text", "labels"))
    for i, r in enumerate(rows):
        r["stars"] = 1 + i % 5
        r["value"] = round(rng.uniform(-2, 2), 3)
    out["stars"] = write_csv(d / "stars.csv", _only(rows, "text", "stars"), ("text", "stars"))
    out["number"] = write_csv(d / "values.csv", _only(rows, "text", "value"), ("text", "value"))
    sentences = [_sentence(rng, "BIO") for _ in range(64)]
    out["tags"] = d / "ner.jsonl"
    out["tags"].write_text(
        "".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in sentences)
    )
    out["conll"] = d / "ner.conll"
    out["conll"].write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(ws, ts, strict=True))
                                        for ws, ts in sentences) + "\n")  # fmt: skip
    out["spans"] = d / "qa.jsonl"
    out["spans"].write_text("".join(json.dumps(qa_row(rng, i)) + "\n" for i in range(48)))
    out["response"] = d / "pairs.jsonl"
    out["response"].write_text("".join(json.dumps(r) + "\n" for r in gen_rows(40, 1)))
    out["chat"] = d / "chat.jsonl"
    out["chat"].write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}
    ]}) + "\n" for r in gen_rows(40, 2)))  # fmt: skip
    out["text_only"] = write_csv(d / "notes.csv", [{"text": r["text"]} for r in rows], ("text",))
    return out


@pytest.mark.parametrize(
    ("name", "goal", "task", "target"),
    [
        ("single", None, "text-classification", "label"),
        ("multi", None, "multi-label", "labels"),
        ("stars", None, "text-classification", "stars"),
        ("stars", "predict the star rating", "regression", "stars"),
        ("number", None, "regression", "value"),
        ("tags", None, "token-classification", "tags"),
        ("conll", None, "token-classification", "tags"),
        ("spans", None, "question-answering", "answers"),
        ("response", None, "generation", "response"),
        ("chat", None, "generation", "response"),
    ],
)
def test_the_task_is_inferred_from_the_file(files, name, goal, task, target):
    p = inspect_file(str(files[name]), goal)
    assert (p.task, p.target_column) == (task, target)
    assert p.language == "en" and p.rows > 0 and p.reasons


def test_the_bundled_sets_are_recognised():
    en = inspect_file(str(DATA / "en_sentiment" / "train.csv"))
    assert (en.task, en.language, set(en.labels)) == (
        "text-classification", "en", {"negative", "positive"})  # fmt: skip
    rating = inspect_file(str(DATA / "en_sentiment" / "train.csv"), "predict the rating")
    assert (rating.task, rating.target_column) == ("regression", "rating")
    assert inspect_file(str(DATA / "en_ratings" / "train.csv")).task == "regression"
    zh = inspect_file(str(DATA / "zh_sentiment" / "train.csv"))
    assert (zh.task, zh.language) == ("text-classification", "zh")


def test_a_file_with_no_target_is_refused_in_one_line(files, capsys):
    with pytest.raises(DataError, match="no usable target"):
        inspect_file(str(files["text_only"]))
    assert main(["plan", "--train", str(files["text_only"]), "--no-probe"]) == 2
    err = capsys.readouterr().err
    assert "notes.csv" in err and "no usable target" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_the_model_follows_the_language(tmp_path):
    from tunelab.planning.choose import pick_method, pick_model

    zh = inspect_file(str(DATA / "zh_sentiment" / "validation.csv"))
    assert pick_model(zh)[0] == "gemma3-270m" and pick_method("gemma3-270m", True)[0] == "lora"
    en = inspect_file(str(DATA / "en_sentiment" / "validation.csv"))
    assert pick_model(en)[0] == "minilm-l6" and pick_method("minilm-l6", False)[0] == "full"


@pytest.mark.parametrize("name", ["single", "multi", "number", "tags", "spans", "response"])
def test_the_plan_runs_as_written(files, tiny_model_dir, tmp_path, name):
    model = make_tiny_llama(tmp_path / "llm") if name == "response" else tiny_model_dir
    plan = tmp_path / "run.plan.yaml"
    code = main(["plan", "--train", str(files[name]), "--model", str(model), "--no-probe",
                 "--output-dir", str(tmp_path / "run"), "--plan", str(plan)])  # fmt: skip
    assert code == 0
    cfg = yaml.safe_load(plan.read_text())
    assert cfg["task"] == inspect_file(str(files[name])).task
    # no validation file was given: the planner split the data, stratified, with the seed
    assert Path(cfg["validation"]).is_file() and Path(cfg["train"]).is_file()
    n = sum(1 for _ in open(cfg["train"])) + sum(1 for _ in open(cfg["validation"]))
    n += sum(1 for _ in open(cfg["test"]))
    assert n == inspect_file(str(files[name])).rows
    assert main(["train", "--config", str(plan), "--epochs", "1", "--no-progress"]) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
    record = json.loads(plan.with_suffix(".json").read_text())
    assert record["reasons"]["model"] == "as asked" and record["estimate"] is None


def test_a_probe_measures_the_plan_and_a_budget_cuts_it(files, tiny_model_dir, tmp_path, capsys):
    """One real probe (a child `tunelab train`): its figures give the estimate; a budget below
    it cuts epochs first, then the data, and says what each cut costs."""
    from tunelab.planning.budget import fit_budget
    from tunelab.planning.trainplan import make_plan

    plan = make_plan(str(files["single"]), model=str(tiny_model_dir),
                     output_dir=str(tmp_path / "run"))  # fmt: skip
    m, est = plan.measured, plan.estimate
    assert m is not None and est is not None
    assert m.steps >= 2 * 16 and m.seconds_per_step > 0 and m.peak_mb > 50
    assert est.total_s > est.train_s > 0 and est.steps >= 1
    rows = {"train": 64, "validation": 8, "test": 8}
    tight = fit_budget(plan.config, m, rows, 10_000, est.fixed_s + est.train_s / 4, [8] * 50)
    assert [next(iter(c.keys)) for c in tight.cuts][0] == "epochs"
    assert all(c.cost for c in tight.cuts) and tight.estimate.total_s < est.total_s
    assert main(["plan", "--train", str(files["single"]), "--model", str(tiny_model_dir),
                 "--budget", "1s", "--output-dir", str(tmp_path / "r2")]) == 4  # fmt: skip
    out = capsys.readouterr().out
    assert "NOT MET" in out and "cut" in out and "estimate" in out


def test_an_accumulated_batch_keeps_the_steps_of_the_batch_it_replaces():
    from tunelab.planning.probe import Measured, estimate

    m = Measured(0.1, 0.5, 0.01, 2.0, 900.0, 20.0, 32, 64, 16, 1000)
    cfg = {"task": "text-classification", "batch_size": 32, "epochs": 1.0}
    small = {**cfg, "batch_size": 16, "gradient_accumulation_steps": 2}
    rows = {"train": 640, "validation": 64}
    assert estimate(small, m, rows, 10**5).steps == estimate(cfg, m, rows, 10**5).steps == 20


def test_spread_sample_and_flag_units():
    from tunelab.planning.cli import _duration, _size
    from tunelab.planning.probe import spread_sample

    lengths = [5, 1, 9, 3, 7, 2]
    picked = spread_sample(lengths, 3)
    assert lengths[picked[0]] == 1 and lengths[picked[-1]] == 9 and len(picked) == 3
    assert spread_sample(lengths, 10) == sorted(range(6), key=lambda i: lengths[i])
    assert (_duration("90s"), _duration("20m"), _duration("1.5h"), _duration("5")) == (
        90, 1200, 5400, 300)  # fmt: skip
    assert (_size("4G"), _size("800M"), _size("512MiB")) == (4096, 800, 512)
