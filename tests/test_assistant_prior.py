"""A knowledge base built without validation questions: its hand-off confidence is fitted on
tunelab's reference questions for its encoder (``tunelab.assistant.prior``), and on the English
shop FAQ (committed, 60 entries) it answers in-scope questions and hands off out-of-scope ones,
where questions made from the FAQ itself handed off every question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.assistant import kb as kbmod
from tunelab.assistant import prior, retrieval
from tunelab.assistant.assistant import Assistant
from tunelab.assistant.sources import read_faq

REPO = Path(__file__).resolve().parents[1]
FAQ = REPO / "data" / "assistant" / "en_shop_faq.jsonl"
EVAL = REPO / "data" / "assistant" / "en_shop_faq_eval.jsonl"


@pytest.mark.parametrize("alias", ["minilm-l6", "gemma3-270m"])
def test_the_shipped_reference_rows_match_todays_features(alias):
    shipped = prior.load(alias)
    assert shipped is not None, f"priors/{alias}.json is missing or measured on other features"
    assert shipped["features"] == list(retrieval.FEATURES)
    assert prior.find(alias, shipped["language"])["rows"] == shipped["pretrained"]["rows"]
    for kind in ("pretrained", "fine_tuned"):
        _check_rows(shipped[kind])


def _check_rows(ref: dict) -> None:
    assert sum(s["questions"] for s in ref["sources"]) == len(ref["rows"])
    feats, right, in_scope = prior.columns(ref)
    assert all(len(f) == len(retrieval.FEATURES) for f in feats)
    assert any(in_scope) and not all(in_scope)  # both kinds, for the scope factor
    assert any(r for r, s in zip(right, in_scope, strict=True) if s)
    assert not any(r for r, s in zip(right, in_scope, strict=True) if not s)


def test_which_encoders_read_reference_rows(tmp_path):
    assert prior.encoder_alias("minilm-l6") == ("minilm-l6", False)
    assert prior.find("minilm-l6", "en")["fine_tuned"] is False
    assert prior.find("minilm-l6", "zh") is None  # English reference questions
    assert prior.find("gemma3-270m", "zh") is not None
    assert prior.find("some-model-without-rows", "en") is None
    assert prior.encoder_alias(str(tmp_path)) is None  # a folder that is not a run


@pytest.mark.slow
def test_a_fine_tuned_encoder_reads_its_base_models_rows(minilm_sentiment):
    run, _ = minilm_sentiment  # a MiniLM run of the session (full fine-tuning)
    assert prior.encoder_alias(str(run)) == ("minilm-l6", True)
    ref = prior.find(str(run), "en")
    assert ref is not None and ref["fine_tuned"] is True
    assert ref["rows"] == prior.load("minilm-l6")["fine_tuned"]["rows"]
    assert "retrievers fine-tuned from minilm-l6" in prior.describe(ref)


def _test_half() -> list[tuple[str, str | None]]:
    rows = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines()]
    return [(r["question"], r["faq_id"]) for r in rows if r["split"] == "test"]


@pytest.mark.slow
def test_a_kb_built_without_validation_answers_and_hands_off(tmp_path, monkeypatch):
    from tunelab.assistant.encoder import Encoder

    entries = read_faq(FAQ)
    said: list[str] = []
    enc = Encoder("minilm-l6")
    kb = kbmod.build(entries, tmp_path / "kb", "minilm-l6", [], encoder=enc, log=said.append)
    cal = json.loads((tmp_path / "kb" / "kb.json").read_text())["calibration"]
    assert "reference questions for minilm-l6" in cal["report"]["source"]
    assert cal["report"]["reference"]["fine_tuned_encoder"] is False
    assert any("no validation questions" in m for m in said)
    bot = Assistant(kb)  # no session: every question asked on its own, as the benchmark asks
    ins = oos = ins_answered = oos_handed = right = 0
    for q, fid in _test_half():
        a = bot.ask(q)
        if fid is None:
            oos += 1
            oos_handed += a["handoff"]
        else:
            ins += 1
            ins_answered += not a["handoff"]
            right += not a["handoff"] and a["id"] == fid
    answered, handed, precision = ins_answered / ins, oos_handed / oos, right / max(1, ins_answered)
    # measured on this machine: 60% of in-scope answered (precision 0.86), 100% of
    # out-of-scope handed off; with questions made from the FAQ: 0% answered
    assert answered >= 0.45 and handed >= 0.9 and precision >= 0.75

    # an encoder without reference rows: the FAQ's own questions, with a warning
    monkeypatch.setattr(prior, "find", lambda label, lang: None)
    said.clear()
    kbmod.build(entries, tmp_path / "kb2", "minilm-l6", [], encoder=enc, log=said.append)
    assert any(m.startswith("warning: no validation questions") for m in said)
    info = json.loads((tmp_path / "kb2" / "kb.json").read_text())
    assert "made from the FAQ" in info["calibration"]["report"]["source"]
