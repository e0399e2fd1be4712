"""Token classification (NER) on the tiny model: schemes, alignment, offsets, errors."""

from __future__ import annotations

import json
import random

import pytest

import tunelab
from conftest import FILLER, NEG, POS
from tunelab.cli import main
from tunelab.errors import DataError
from tunelab.tasks import token_classification as tok_task
from tunelab.tasks.tags import spans, to_bio

# entity words come from the tiny vocabulary; "zq" and "xyv" are split into letter pieces
TYPES = {"PER": POS, "LOC": NEG}
OOV = ["zq", "xyv", "kw"]


def _sentence(rng: random.Random, scheme: str) -> tuple[list[str], list[str]]:
    words, tags = [], []
    for _ in range(rng.randint(1, 3)):
        # an "O" word between entities keeps the boundaries learnable
        words.append(rng.choice(FILLER + OOV))
        tags.append("O")
        typ = rng.choice(sorted(TYPES))
        n = rng.randint(1, 3)
        ent = [rng.choice(TYPES[typ]) for _ in range(n)]
        if scheme == "BIO":
            t = ["B"] + ["I"] * (n - 1)
        else:  # BIOES or BMES
            mid = "I" if scheme == "BIOES" else "M"
            t = ["S"] if n == 1 else ["B"] + [mid] * (n - 2) + ["E"]
        words += ent
        tags += [f"{p}-{typ}" for p in t]
    return words, tags


@pytest.fixture(scope="module")
def ner_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ner")
    rng = random.Random(0)
    train = d / "train.jsonl"
    train.write_text(
        "".join(
            json.dumps(dict(zip(("tokens", "tags"), _sentence(rng, "BIOES"), strict=True))) + "\n"
            for _ in range(160)
        )
    )
    val = d / "validation.jsonl"
    val.write_text(
        "".join(
            json.dumps(dict(zip(("tokens", "tags"), _sentence(rng, "BIO"), strict=True))) + "\n"
            for _ in range(40)
        )
    )
    test = d / "test.bmes"  # CoNLL style, BMES, CRLF like the MSRA files
    test.write_bytes(
        "\r\n\r\n".join(
            "\r\n".join(f"{w} {t}" for w, t in zip(*_sentence(rng, "BMES"), strict=True))
            for _ in range(40)
        ).encode()
        + b"\r\n"
    )
    return {"train": train, "validation": val, "test": test}


def test_ner_cli_end_to_end(tiny_model_dir, ner_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "token-classification",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(ner_data["train"]),
                "--validation",
                str(ner_data["validation"]),
                "--test",
                str(ner_data["test"]),
                "--epochs",
                "30",
                "--early-stopping-patience",
                "0",
                "--batch-size",
                "16",
                "--learning-rate",
                "5e-3",
                "--max-length",
                "48",
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.splitlines()[0])
    assert summary["test"]["f1"] >= 0.8, summary
    info = json.loads((out / "tunelab.json").read_text())
    assert info["labels"] == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert info["text_column"] == "tokens" and info["target"]["alignment"] == "first-piece"

    m = tunelab.load(out)
    text = "the great excellent movie was  awful zq"
    ents = m.predict(text)["entities"]
    assert [(e["text"], e["type"]) for e in ents] == [("great excellent", "PER"), ("awful", "LOC")]
    for e in ents:
        assert text[e["start"] : e["end"]] == e["text"] and 0 < e["score"] <= 1
    metrics = m.evaluate(str(ner_data["test"]))
    assert metrics["f1"] == pytest.approx(summary["test"]["f1"])
    assert set(metrics["per_type"]) == {"PER", "LOC"}

    # the ONNX export (per-token outputs, dynamic sequence axis) finds the same entities
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
    onnx = tunelab.load(tmp_path / "onnx")
    got = onnx.predict(text)["entities"]
    assert [(e["text"], e["start"], e["end"]) for e in got] == [
        (e["text"], e["start"], e["end"]) for e in ents
    ]
    assert [e["score"] for e in got] == pytest.approx([e["score"] for e in ents], abs=1e-4)
    assert onnx.evaluate(str(ner_data["test"]))["f1"] == pytest.approx(metrics["f1"])


def test_schemes_convert_to_the_same_spans():
    bioes = ["B-PER", "E-PER", "O", "S-LOC", "B-ORG", "I-ORG", "E-ORG"]
    bmes = ["B-PER", "E-PER", "O", "S-LOC", "B-ORG", "M-ORG", "E-ORG"]
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "I-ORG"]
    assert to_bio(bioes) == to_bio(bmes) == to_bio(bio) == bio
    assert spans(bio) == [("PER", 0, 1), ("LOC", 3, 3), ("ORG", 4, 6)]
    assert to_bio(["S-LOC", "S-LOC"]) == ["B-LOC", "B-LOC"]  # two adjacent single entities
    assert to_bio(["I_PER", "O"]) == ["B-PER", "O"]  # underscore form, stray I- starts a span


def test_first_piece_alignment(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ex = tok_task.Examples([["great", "xyv", "awful"]], [["B-PER", "O", "B-LOC"]], [1], "x")
    spec = {"labels": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]}
    ids, targets = tok_task.encode(tok, ex, spec, 32, "tags")
    # [CLS] great x ##y ##v awful [SEP]
    assert targets[0] == [-100, 3, 0, -100, -100, 1, -100]
    assert len(ids[0]) == len(targets[0])


@pytest.mark.parametrize(
    "name,content,expected",
    [
        (
            "a.jsonl",
            '{"tokens": ["a", "b", "c"], "tags": ["O", "O"]}\n',
            r"a.jsonl:1: field 'tags': 3 tokens but 2 tags",
        ),
        (
            "b.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a"], "tags": ["X-PER"]}\n',
            r"b.jsonl:2: field 'tags': tag 'X-PER' is not O or B-, I-, M-, E-, S-",
        ),
        (
            "c.jsonl",
            '{"tokens": "a b", "tags": ["O", "O"]}\n',
            r"c.jsonl:1: field 'tokens': expected a non-empty list of token strings",
        ),
        ("d.conll", "a O\nb B-PER\n\nc PERSON\n", r"d.conll:4: field 'tags': tag 'PERSON'"),
        ("e.conll", "a O\nlonely\n", r"e.conll:2: field 'tags': expected 'token tag'"),
    ],
)
def test_bad_ner_files(tmp_path, name, content, expected):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(DataError, match=expected):
        tok_task.read_examples(str(p), "tokens", "tags")


def test_raw_text_is_split_like_ner_corpora():
    text = "李明 visited Paris, 2004年!"
    words = [m.group() for m in tok_task.WORD.finditer(text)]
    assert words == ["李", "明", "visited", "Paris", ",", "2004", "年", "!"]


def test_causal_models_label_the_second_copy_only(tiny_model_dir):
    """For decoder models the sentence is fed twice; only the second copy carries labels, one
    per word, so every word is scored once with the whole sentence to its left."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = [["good", "movie", "zq"], ["bad"]]
    ex = tok_task.Examples(words, [["B-PER", "O", "B-LOC"], ["B-LOC"]], [1, 2], "x.jsonl")
    spec = {"labels": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"], "repeat_input": True}
    ids, targets = tok_task.encode(tok, ex, spec, 32, "tags")
    for w, x, t in zip(words, ids, targets, strict=True):
        labelled = [i for i, v in enumerate(t) if v != tok_task.IGNORE]
        assert len(labelled) == len(w)
        assert labelled[0] > len(x) // 2 - 1  # all in the second copy
    assert [
        spec["labels"][targets[0][i]] for i, v in enumerate(targets[0]) if v != tok_task.IGNORE
    ] == ["B-PER", "O", "B-LOC"]
