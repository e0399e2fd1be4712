"""Coverage (tunelab.assistant.coverage): late interaction over the encoder's token vectors
re-scores the fused ranking's top and feeds the confidence model. The arithmetic on small
arrays, then the real MiniLM on the real Python FAQ KB: one forward pass gives both vectors,
keys left out stay out, the KB records the measured weight, and a KB built before coverage
still loads and answers as it was calibrated."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tunelab.assistant import confidence, coverage, retrieval
from tunelab.assistant.assistant import Assistant
from tunelab.assistant.kb import KnowledgeBase
from tunelab.store.db import open_store


def _unit(rows: list[list[float]]) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float32)
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float16)


def _cand(entry: int, score: float, cov: float | None = None) -> retrieval.Candidate:
    return retrieval.Candidate(entry, score, score, 0.0, entry, None, cov)


def test_coverage_is_the_mean_best_match_of_the_question_tokens():
    e = _unit([[1, 0, 0], [0, 1, 0]])
    assert coverage.coverage(_unit([[1, 0, 0], [0, 1, 0]]), e) == pytest.approx(1.0, abs=1e-3)
    assert coverage.coverage(_unit([[1, 0, 0], [0, 0, 1]]), e) == pytest.approx(0.5, abs=1e-3)
    assert coverage.coverage(_unit([[0, 0, 1]]), e) == pytest.approx(0.0, abs=1e-3)
    assert coverage.coverage(np.zeros((0, 3), np.float16), e) == 0.0


def test_reorder_moves_only_the_top_by_score_plus_weighted_coverage():
    cands = [_cand(0, 0.9, 0.1), _cand(1, 0.8, 0.9), _cand(2, 0.7, 0.5)]
    cands += [_cand(i, 0.6 - i / 100) for i in range(3, 8)]
    assert [c.entry for c in coverage.reorder(cands, 0.0)] == list(range(8))
    assert [c.entry for c in coverage.reorder(cands, 1.0)][:3] == [1, 2, 0]  # 1.7, 1.2, 1.0
    # the sixth candidate on stays where it was, whatever the weight
    assert [c.entry for c in coverage.reorder(cands, 2.0)][5:] == [5, 6, 7]
    figs = coverage.best_weight(
        [cands], [1], lambda c, w: {"mrr": 1.0 if c[0][0].entry == w[0] else 0.0}
    )
    assert figs["weight"] == 0.25 and figs["top"] == coverage.TOP  # the smallest that works


def test_confidence_is_p_in_scope_times_p_right_given_in_scope():
    """Feature 0 tells in-scope from out-of-scope questions, feature 1 right from wrong
    answers among the in-scope ones: each factor learns its own; a set without out-of-scope
    questions gets one model; a calibration saved without the scope factor still loads."""
    rng = np.random.default_rng(0)
    n = 400
    ins = rng.random(n) < 0.6
    right = ins & (rng.random(n) < 0.8)
    x = np.c_[ins + rng.normal(0, 0.3, n), right + rng.normal(0, 0.3, n), rng.normal(0, 1, n)]
    cal = confidence.fit(x.tolist(), right.tolist(), ins.tolist(), 0.9, "synthetic")
    assert cal.scope is not None
    assert cal.scope["coef"][0] > cal.scope["coef"][1] > 0  # scope reads feature 0 most
    assert abs(cal.coef[1]) > 3 * abs(cal.coef[0])  # right | in scope reads feature 1
    f = [1.0, 1.0, 0.0]
    both = cal.probability(f)
    alone = confidence.Calibration(cal.coef, cal.intercept, 0.5, 0.9, {}).probability(f)
    assert 0 < both < alone  # the product of the two
    assert cal.probability([0.0, 1.0, 0.0]) < 0.2 < 0.8 < cal.probability([1.0, 1.0, 0.0])
    assert cal.report["precision_answered"] >= 0.9
    again = confidence.Calibration.from_json(json.loads(json.dumps(cal.as_json())))
    assert again.probability(f) == pytest.approx(both)
    old = {k: v for k, v in cal.as_json().items() if k != "scope"}
    assert confidence.Calibration.from_json(old).scope is None
    only_in = confidence.fit(
        x[ins].tolist(), right[ins].tolist(), [True] * int(ins.sum()), 0.9, "s"
    )
    assert only_in.scope is None


@pytest.mark.slow
def test_one_forward_pass_gives_the_vectors_and_the_token_vectors(python_faq_kb):
    kb = KnowledgeBase.load(python_faq_kb)
    texts = ["How do I kill a thread?", "Why is Python slow?"]
    vecs, toks = kb.encoder.encode_tokens(texts)
    assert np.allclose(vecs, kb.encoder.encode(texts), atol=1e-6)
    for t in toks:
        assert t.dtype == np.float16 and 4 <= len(t) <= 12  # special tokens left out
        assert np.allclose(np.linalg.norm(t.astype(np.float32), axis=1), 1.0, atol=2e-3)


@pytest.mark.slow
def test_keys_left_out_stay_out_of_an_entrys_coverage(python_faq_kb):
    """Calibrating on the FAQ itself asks a variant with that key left out: its coverage must
    not see the variant's own tokens (which would cover it perfectly)."""
    kb = KnowledgeBase.load(python_faq_kb)
    e, _, text = next(k for k in kb.keys if k[1] == "question")
    own = next(i for i, k in enumerate(kb.keys) if k[0] == e and k[1] == "question")
    q = kb.encoder.encode_tokens([text])[1][0]
    full = coverage.coverage(q, kb.tokens.entry(e))
    mask = np.zeros(len(kb.keys), dtype=bool)
    mask[own] = True
    assert full > 0.99 and coverage.coverage(q, kb.tokens.entry(e, mask)) < 0.95
    assert len(kb.tokens.entry(e, mask)) < len(kb.tokens.entry(e))


@pytest.mark.slow
def test_the_kb_records_coverage_and_search_carries_it(python_faq_kb):
    info = json.loads((python_faq_kb / "kb.json").read_text())
    cov = info["coverage"]
    assert cov["method"] == "maxsim" and cov["weight"] in coverage.WEIGHTS
    assert set(cov["tried"]) == {str(w) for w in coverage.WEIGHTS}
    assert len(info["calibration"]["coef"]) == len(retrieval.FEATURES)
    kb = KnowledgeBase.load(python_faq_kb)
    cands = kb.search("how do I stop a thread that is running?")
    assert all(c.coverage is not None for c in cands[: coverage.TOP])
    assert all(c.coverage is None for c in cands[coverage.TOP :])
    plain = kb.search("how do I stop a thread that is running?", rescore=False)
    assert sorted(c.entry for c in plain[:5]) == sorted(c.entry for c in cands[:5])


@pytest.mark.slow
def test_a_kb_built_before_coverage_answers_as_it_was_calibrated(python_faq_kb, tmp_path):
    old = tmp_path / "old-kb"
    shutil.copytree(python_faq_kb, old)
    info = json.loads((old / "kb.json").read_text())
    del info["coverage"]
    n = len(retrieval.FEATURES) - 2  # the features before coverage
    info["calibration"]["coef"] = info["calibration"]["coef"][:n]
    (old / "kb.json").write_text(json.dumps(info))
    kb = KnowledgeBase.load(old)
    assert kb.coverage_weight is None
    cands = kb.search("Why is Python slow?")
    assert all(c.coverage is None for c in cands)
    bot = Assistant(kb, open_store(str(tmp_path / "t.db")), "old")
    reply = bot.ask("How do I make a Python script executable on Unix?")
    assert 0.0 <= reply["score"] <= 1.0 and isinstance(reply["handoff"], bool)
