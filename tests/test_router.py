"""Task routing: argument filling (pure rules), the shipped request set, and the router end to
end on a tiny model trained with `tunelab route-train`: confident calls, unsure answers,
`tunelab route` and `tunelab chat`."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import random
import sys
from pathlib import Path

import pytest

from conftest import FILLER, REPO, write_csv
from tunelab.cli import main
from tunelab.errors import TunelabError
from tunelab.functions import FUNCTIONS
from tunelab.functions.router import (
    DATA,
    evaluate,
    fill_arguments,
    payload,
    plan,
    question_and_context,
    route,
    router_model,
)


@pytest.mark.parametrize(
    "request_, text",
    [
        ("is this review positive or negative? the battery died", "the battery died"),
        ("sentiment of: Great value for money", "Great value for money"),
        ("这条评论是正面还是负面：电池两天就没电了", "电池两天就没电了"),
        (
            'tell me if this customer is happy: "Fast shipping, well packed"',
            "Fast shipping, well packed",
        ),
        ("作者是高兴还是生气：“性价比很高，还会再买”", "性价比很高，还会再买"),
        ("根据这里写的内容——北京批准了新的地铁线路", "北京批准了新的地铁线路"),
        ("great phone", "great phone"),
    ],
)
def test_payload_is_what_the_request_is_about(request_, text):
    assert payload(request_) == text
    assert fill_arguments("analyze_sentiment", request_) == {"text": text}


@pytest.mark.parametrize(
    "request_, question, context",
    [
        (
            "question: when did it happen? context: Apple opened a store in Berlin.",
            "when did it happen?",
            "Apple opened a store in Berlin",
        ),
        (
            'the article says "Tesla fell 5% in New York". where did it happen?',
            "where did it happen?",
            "Tesla fell 5% in New York",
        ),
        (
            "given that Customers praised the Seattle store, which city is mentioned?",
            "which city is mentioned?",
            "given that Customers praised the Seattle store",
        ),
        (
            "段落：李明昨天在上海见了王芳 问题：在哪里发生的？",
            "在哪里发生的？",
            "李明昨天在上海见了王芳",
        ),
        (
            "根据这段话回答：提到了哪个城市？原文：顾客称赞南京门店结账很快",
            "提到了哪个城市？",
            "顾客称赞南京门店结账很快",
        ),
        ("who won", "who won", "who won"),  # no question mark: the whole request is both
    ],
)
def test_question_and_context(request_, question, context):
    assert question_and_context(request_) == (question, context)
    assert fill_arguments("answer", request_) == {"question": question, "context": context}


def test_generate_gets_the_whole_request_and_unknown_functions_are_refused():
    assert fill_arguments("generate", " write a reply to: thanks! ") == {
        "prompt": "write a reply to: thanks!"
    }
    with pytest.raises(TunelabError, match="not a task function"):
        fill_arguments("positive", "anything")


def test_the_shipped_requests_cover_every_function_in_both_languages_and_test_is_new():
    split = {
        n: list(csv.DictReader(open(DATA / f"{n}.csv", encoding="utf-8")))
        for n in ("train", "validation", "test")
    }
    from tunelab.functions.catalog import task_functions

    shipped = [f.name for f in task_functions() if f.route_examples == DATA]  # not the systems'
    assert set(FUNCTIONS) - set(shipped) == {"answer_faq", "compose_music"}
    for rows in split.values():
        assert {(r["label"], r["lang"]) for r in rows} == {
            (f, lang) for f in [*shipped, "none"] for lang in ("en", "zh")
        }
    seen = {r["text"] for r in split["train"] + split["validation"]}
    assert not seen & {r["text"] for r in split["test"]}
    # the hand-written training requests: every function and language, none held out
    written = list(csv.DictReader(open(DATA / "written.csv", encoding="utf-8", newline="")))
    assert {(r["label"], r["lang"]) for r in written} == {
        (f, lang) for f in [*shipped, "none"] for lang in ("en", "zh")
    }
    tested = {r["text"].strip().lower() for r in split["test"]}
    assert not {r["text"].strip().lower() for r in written} & tested
    # the files are what tools/make_route_data.py builds, where the test split uses only
    # request templates that training never sees
    spec = importlib.util.spec_from_file_location(
        "make_route_data", REPO / "tools" / "make_route_data.py"
    )
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    train, test = gen.build()
    assert test == split["test"] and train == split["validation"] + split["train"]
    held_out = {
        t
        for by_lang in gen.TEMPLATES.values()
        for ts in by_lang.values()
        for t in ts[gen.TRAIN_N :]
    }
    assert not held_out & {
        t
        for by_lang in gen.TEMPLATES.values()
        for ts in by_lang.values()
        for t in ts[: gen.TRAIN_N]
    }


# toy requests the tiny model can learn: the function is named by one word of its vocabulary
KEYWORD = {
    "analyze_sentiment": "love",
    "classify": "great",
    "score": "excellent",
    "extract_entities": "happy",
    "answer": "sad",
    "generate": "boring",
    "compose_music": "superb",
    "none": "broken",
}


def _toy_requests(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = list(KEYWORD)[i % len(KEYWORD)]
        words = rng.choices(FILLER, k=3)
        words.insert(rng.randrange(4), KEYWORD[label])
        rows.append(
            {
                "text": f"{' '.join(words)}: good film",
                "label": label,
                "lang": "en" if i % 2 else "zh",
            }
        )
    return rows


@pytest.fixture(scope="module")
def router(learnable_model_dir, tmp_path_factory):
    """A router trained by `tunelab route-train --data` on toy requests it can learn (16 epochs:
    at 10 one dropout stream left "happy" -> extract_entities just under the 0.5 threshold)."""
    d = tmp_path_factory.mktemp("router")
    data = d / "requests"
    data.mkdir()
    for name, n, seed in (("train", 280, 0), ("validation", 42, 1), ("test", 42, 2)):
        write_csv(data / f"{name}.csv", _toy_requests(n, seed), ("text", "label", "lang"))
    mp = pytest.MonkeyPatch()
    mp.setenv("TUNELAB_MODELS", str(d / "models.yaml"))
    try:
        assert (
            main(
                [
                    "route-train",
                    "--data",
                    str(data),
                    "--model",
                    str(learnable_model_dir),
                    "--method",
                    "full",
                    "--epochs",
                    "16",
                    "--batch-size",
                    "8",
                    "--max-length",
                    "32",
                    "--learning-rate",
                    "3e-3",
                    "--output-dir",
                    str(d / "router"),
                    "--no-progress",
                ]
            )
            == 0
        )
    finally:
        mp.undo()
    return d


def test_route_train_registers_the_router_and_reports_held_out_accuracy(router):
    report = json.loads((router / "router" / "route_eval.json").read_text())
    assert report["all"]["requests"] == 42 and report["en"]["requests"] == 21
    assert report["all"]["accuracy"] > 0.9  # the keyword decides: it has to be learnt
    assert (
        report["out_of_scope"]
        == {"requests": 5, "declined": pytest.approx(report["out_of_scope"]["declined"])}
        and report["out_of_scope"]["declined"] > 0.5
    )
    assert "route:" in (router / "models.yaml").read_text()
    labels = json.loads((router / "router" / "config.json").read_text())["id2label"]
    assert sorted(labels.values()) == sorted(KEYWORD)  # the functions its data names


def test_the_router_is_measured_on_the_shipped_held_out_requests(router):
    report = evaluate(str(router / "router"))
    for lang, n in (("en", 116), ("zh", 116), ("all", 232)):
        assert report[lang]["requests"] == n and 0 <= report[lang]["accuracy"] <= 1
    assert report["out_of_scope"]["requests"] == 16


def test_route_train_refuses_a_data_folder_without_its_files(tmp_path, capsys):
    assert main(["route-train", "--data", str(tmp_path), "--output-dir", str(tmp_path / "r")]) != 0
    err = capsys.readouterr().err
    assert "train.csv: missing" in err and "Traceback" not in err


@pytest.fixture()
def routing(router, registry):
    """The tiny router registered next to every task function's tiny model."""
    assert main(["register", "route", str(router / "router")]) == 0
    return registry


@pytest.mark.parametrize("function", [f for f in KEYWORD if f != "none"])
def test_a_confident_route_calls_the_chosen_function_with_the_filled_arguments(routing, function):
    request = f"this {KEYWORD[function]} is it: good film"
    r = route(request, threshold=0.5)
    assert not r.unsure and r.function == function and r.confidence >= 0.5
    assert r.arguments == fill_arguments(function, request)
    if function == "compose_music":  # a new melody each time unless a seed is given
        assert Path(r.result.midi).is_file() and Path(r.result.wav).is_file()
        assert r.result.bars == 8  # the default length
    else:
        assert r.result == FUNCTIONS[function](**r.arguments)
    probs = [p for _, p in r.candidates]
    assert r.confidence == probs[0] and probs == sorted(probs, reverse=True)
    assert len(r.candidates) == 3


def test_below_the_threshold_nothing_is_called_and_the_candidates_are_listed(
    routing, monkeypatch, capsys
):
    called = []
    monkeypatch.setitem(FUNCTIONS, "analyze_sentiment", lambda **k: called.append(k))
    r = route("the love it: good film", threshold=1.01)  # no probability reaches it
    assert r.unsure and not r.out_of_scope and r.result is None and not called
    assert r.candidates[0][0] == "analyze_sentiment" and len(r.candidates) == 3
    assert main(["route", "the love it: good film", "--threshold", "1.01"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["unsure"] is True and "result" not in out and "threshold" in out["reason"]
    assert [c["function"] for c in out["candidates"]] == [f for f, _ in r.candidates]


def test_a_request_for_no_function_is_declined_not_forced(routing, capsys):
    r = route("this movie was broken: good film", threshold=0.0)
    assert r.out_of_scope and r.function is None and r.result is None
    assert main(["route", "this movie was broken: good film", "--threshold", "0"]) == 3
    assert "no task function" in json.loads(capsys.readouterr().out)["reason"]


def test_route_command_prints_the_routed_call_as_json(routing, capsys):
    assert main(["route", "happy it is: awful bad plot"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["function"] == "extract_entities" and out["arguments"] == {"text": "awful bad plot"}
    assert isinstance(out["result"], list)
    assert main(["route", "excellent it is: bad", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["function"] == "score" and out["arguments"] == {"text": "bad"}
    assert out["result"] is None


def test_chat_answers_each_line_until_quit(routing, monkeypatch, capsys):
    monkeypatch.setattr(
        "sys.stdin",
        io.StringIO(
            "the love it: good\n\nthe excellent it: bad\nthis movie was broken: good film\n"
            "quit\nlove it: never read\n"
        ),
    )
    assert main(["chat"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("analyze_sentiment (") and "label" in lines[0]
    assert lines[1].startswith("score (")
    assert lines[2].startswith("that is not something I can do")
    monkeypatch.setattr("sys.stdin", io.StringIO("the love it: good film\n"))
    assert main(["chat", "--threshold", "1.01"]) == 0
    assert "not sure what you want" in capsys.readouterr().out


def test_without_a_router_or_with_a_wrong_one_the_error_says_what_to_do(
    runs, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "models.yaml"))
    with pytest.raises(TunelabError, match="tunelab route-train"):
        router_model()
    assert main(["route", "anything"]) != 0
    assert "tunelab route-train" in capsys.readouterr().err
    with pytest.raises(TunelabError, match="not a router"):
        plan(["x"], folder=str(runs["classify"]))  # labels negative/positive


def test_the_studio_chat_routes_a_request_like_tunelab_route(routing, tmp_path):
    """The studio's Chat page calls the router as `tunelab route` does (a real studio
    process, reading the same model registry)."""
    from serving_helpers import Server

    s = Server(
        ["--runs-dir", str(tmp_path / "runs")],
        tmp_path / "studio.log",
        wait_ready=False,
        command=[str(Path(sys.executable).parent / "tunelab"), "studio"],
    )
    try:
        s.wait("/healthz")
        request = f"this {KEYWORD['analyze_sentiment']} is it: good film"
        status, body, _ = s.request("POST", "/v1/studio/chat", {"message": request})
        assert status == 200, body
        assert body["function"] == "analyze_sentiment" and not body.get("unsure")
        assert body["arguments"] == fill_arguments("analyze_sentiment", request)
        assert body["result"]["label"] in ("negative", "positive")
        status, body, _ = s.request("POST", "/v1/studio/chat", {"message": "  "})
        assert status == 422 and "type a request" in str(body)
    finally:
        s.stop()
