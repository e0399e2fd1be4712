"""Extractive QA on the tiny model: windows and offsets, training via the CLI, answers with
character offsets, SQuAD file layouts and bad-offset errors."""

from __future__ import annotations

import json
import random

import pytest
from transformers import AutoTokenizer

import tunelab
from conftest import FILLER, NEG, POS
from tunelab.cli import main
from tunelab.errors import DataError
from tunelab.tasks import question_answering as qa


def _row(rng: random.Random, i: int) -> dict:
    """Context: filler words around one positive and one negative word. The question names a
    polarity ("good" or "bad"); the answer is the context's word of that polarity."""
    words = rng.sample(FILLER * 3, rng.randint(14, 22))
    pos, neg = rng.choice(POS[1:]), rng.choice(NEG[1:])
    a, b = sorted(rng.sample(range(len(words) + 1), 2))
    words.insert(b, neg)
    words.insert(a, pos)
    if i % 2:
        words[a], words[b + 1] = words[b + 1], words[a]  # also vary the order
    context = " ".join(words)
    want = pos if i % 3 else neg
    q = "good" if want == pos else "bad"
    start = f" {context} ".index(f" {want} ")
    return {
        "id": f"q{i}",
        "question": q,
        "context": context,
        "answers": {"text": [want], "answer_start": [start]},
    }


@pytest.fixture(scope="module")
def qa_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("qa")
    rng = random.Random(0)
    out = {}
    for split, n in (("train", 384), ("validation", 48), ("test", 48)):
        p = d / f"{split}.jsonl"
        p.write_text("".join(json.dumps(_row(rng, i)) + "\n" for i in range(n)))
        out[split] = p
    return out


def test_reader_checks_answer_offsets(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = [
        {
            "question": "q",
            "context": "the cat sat",
            "answers": {"text": ["cat"], "answer_start": [4]},
        },
        {
            "question": "q",
            "context": "the cat sat",
            "answers": {"text": ["cat"], "answer_start": [5]},
        },
    ]
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as e:
        qa.read_examples(str(bad), "question", "answers")
    assert str(e.value) == (
        f"{bad}:2: field 'answers': answer 'cat' is not at offset 5 of the context (found 'at ')"
    )


def test_reader_accepts_squad_json_and_answer_lists(tmp_path):
    squad = tmp_path / "dev.json"
    squad.write_text(
        json.dumps(
            {
                "data": [
                    {
                        "title": "t",
                        "paragraphs": [
                            {
                                "context": "Leeds won the cup in 2004.",
                                "qas": [
                                    {
                                        "id": "a",
                                        "question": "Who won?",
                                        "answers": [
                                            {"text": "Leeds", "answer_start": 0},
                                            {"text": "Leeds", "answer_start": 0},
                                        ],
                                    },
                                    {
                                        "id": "b",
                                        "question": "When?",
                                        "answers": [{"text": "2004", "answer_start": 21}],
                                    },
                                ],
                            }
                        ],
                    }
                ]
            }
        )
    )
    ex = qa.read_examples(str(squad), "question", "answers")
    assert [q.question for q in ex.texts] == ["Who won?", "When?"]
    assert ex.labels[1] == (("2004", 21),)


def test_windows_cover_every_answer(tiny_model_dir, qa_data):
    """Property: with a short window and a stride, every question's gold answer is recovered
    exactly from the token offsets of at least one window."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ex = qa.read_examples(str(qa_data["train"]), "question", "answers")
    spec = qa.make_spec(ex, {"doc_stride": 6})
    ids, targets = qa.encode(tok, ex, spec, 16, "answers")
    assert len(ids) > len(ex.texts)  # long contexts really were split
    assert all(len(x) <= 16 for x in ids)
    found = {}
    for t in targets:
        if t["start"]:
            a, b = t["offsets"][t["start"]][0], t["offsets"][t["end"]][1]
            found[t["question"]] = t["context"][a:b]
    assert found == {i: q.answers[0][0] for i, q in enumerate(ex.texts)}


def test_exact_match_and_f1_follow_squad_rules():
    assert qa.normalize("The  Cup!") == "cup"
    assert qa.token_f1("the big red cup", "red cup") == pytest.approx(0.8)
    assert qa.token_f1("北京大学", "北京") == pytest.approx(2 / 3)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_qa_trains_predicts_and_reloads(
    tiny_model_dir, qa_data, tmp_path, capsys, method, monkeypatch
):
    out = tmp_path / "run"
    lr = "3e-3" if method == "full" else "1e-2"
    assert (
        main(
            [
                "train",
                "--task",
                "question-answering",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(qa_data["train"]),
                "--validation",
                str(qa_data["validation"]),
                "--test",
                str(qa_data["test"]),
                "--max-length",
                "24",
                "--doc-stride",
                "8",
                "--epochs",
                "25",
                "--batch-size",
                "16",
                "--learning-rate",
                lr,
                "--method",
                method,
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    # a random pick among the ~20 context words scores about 0.05
    assert summary["test"]["f1"] > 0.3, summary
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["windows"] > metrics["test"]["n"]

    m = tunelab.load(out)
    rows = [json.loads(x) for x in qa_data["test"].read_text().splitlines()]
    preds = m.predict([{"question": r["question"], "context": r["context"]} for r in rows])
    for r, p in zip(rows, preds, strict=True):
        assert r["context"][p["start"] : p["end"]] == p["answer"]
        assert 0.0 <= p["score"] <= 1.0
    em = sum(
        p["answer"] == r["answers"]["text"][0] for r, p in zip(rows, preds, strict=True)
    ) / len(rows)
    assert em == pytest.approx(metrics["test"]["exact_match"])
    assert m.evaluate(str(qa_data["test"]))["f1"] == pytest.approx(metrics["test"]["f1"])

    # the CLI reads JSON lines with question and context, and echoes id and question
    monkeypatch.setattr("sys.stdin", _Stdin("".join(json.dumps(r) + "\n" for r in rows[:3])))
    assert main(["predict", "--model-dir", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == ["q0", "q1", "q2"]
    assert {"question", "answer", "start", "end", "score"} <= set(lines[0])

    # the ONNX export (start and end logits per token) answers the same
    assert (
        main(
            [
                "export",
                "--model-dir",
                str(out),
                "--format",
                "onnx",
                "--output-dir",
                str(tmp_path / "onnx"),
            ]
        )
        == 0
    )
    onnx = tunelab.load(tmp_path / "onnx").predict(
        [{"question": r["question"], "context": r["context"]} for r in rows]
    )
    assert [p["answer"] for p in onnx] == [p["answer"] for p in preds]


class _Stdin:
    def __init__(self, text: str) -> None:
        import io

        self.buffer = io.BytesIO(text.encode())


def test_predict_input_without_context_is_a_clear_error(tmp_path):
    f = tmp_path / "questions.jsonl"
    f.write_text(
        json.dumps({"question": "who?", "context": "Ann"})
        + "\n"
        + json.dumps({"question": "who?"})
        + "\n"
    )
    with pytest.raises(DataError) as e:
        qa.read_inputs(str(f), "question")
    assert str(e.value).startswith(f"{f}:2: field 'context'")
