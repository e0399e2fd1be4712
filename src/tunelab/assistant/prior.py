"""Reference calibration questions: the hand-off confidence of a knowledge base built without
``--validation``.

Questions made from the FAQ itself (``calibrate.synthetic``: a question with its own key left
out must find its entry, with its whole entry left out must be handed off) are unlike users'
questions on both sides. The left-out question is harder to match than a paraphrase (its best
key is gone), and the left-out entry leaves close neighbours behind, so it looks more in scope
than a real out-of-scope question. A confidence fitted on them and thresholded at precision
0.9 handed off every test question of both English FAQs (measured with pretrained MiniLM:
100% of in-scope and out-of-scope questions on the Python FAQ and on the shop FAQ).

The retrieval features (``retrieval.FEATURES``: scores, margins, coverage) mean the same on
any FAQ for one encoder, so the confidence is fitted instead on real users' questions asked of
tunelab's reference FAQs with the same encoder: the dev halves of the hand-written evaluation
sets in data/assistant (paraphrases and out-of-scope questions). Each reference's rows are
its questions' features under its own calibrated KB, whether its top candidate was right, and
whether it was in scope; ``calibrate`` fits the confidence and picks the threshold on them at
the build's target precision. Measured leave-one-FAQ-out (bench/assistant.py): see the
README's assistant section.

Each encoder has two sets of rows: asked with the encoder itself, and asked with retrievers
fine-tuned from it, each on its own reference FAQ (``assistant tune``, the evaluation questions
excluded), which a KB on a fine-tuned retriever reads: fine-tuning moves the scores (pretrained
Gemma's mean-pooled vectors barely rank; its rows handed off every question a fine-tuned Gemma
KB was asked). An encoder with no reference rows falls back to the questions made from the
FAQ, with a warning. ``scripts/assistant_prior.py`` writes the files in ``priors/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.assistant import retrieval

FOLDER = Path(__file__).with_name("priors")


def encoder_alias(label: str) -> tuple[str, bool] | None:
    """(the model alias whose reference rows apply, whether the encoder is a fine-tuned run of
    it) for a KB's model label (an alias, or a run folder's absolute path); None when neither."""
    p = Path(label)
    if not p.is_absolute():
        return label, False
    from tunelab.errors import TunelabError
    from tunelab.runs import read_run

    try:
        base = read_run(p).base_model or {}
    except TunelabError:  # not a run folder (an export, a model folder): no reference rows
        return None
    return (str(base["source"]), True) if base.get("kind") == "alias" else None


def load(alias: str) -> dict | None:
    """The reference rows of an encoder alias, or None when none were measured for it (or they
    were measured with other features than today's)."""
    path = FOLDER / f"{alias}.json"
    if not path.is_file():
        return None
    ref = json.loads(path.read_text(encoding="utf-8"))
    return ref if ref.get("features") == list(retrieval.FEATURES) else None


def language(entries) -> str:
    """ "zh" when most of the entries' questions are Chinese, else "en"."""
    from tunelab.assistant.text import is_chinese

    zh = sum(is_chinese(e.question) for e in entries)
    return "zh" if entries and zh >= len(entries) / 2 else "en"


def find(label: str, lang: str) -> dict | None:
    """The reference rows for a KB's encoder label and language, or None (none for the
    encoder, or they were asked in another language: MiniLM's are English, and a Chinese FAQ
    read by MiniLM scores unlike them): ``encoder``, ``fine_tuned``, ``sources``, ``rows``, from
    the set measured with the alias itself or with retrievers fine-tuned from it."""
    found = encoder_alias(label)
    ref = load(found[0]) if found else None
    if ref is None or found is None or ref.get("language") != lang:
        return None
    fine_tuned = found[1]
    rows = ref["fine_tuned" if fine_tuned else "pretrained"]
    return {"encoder": ref["encoder"], "fine_tuned": fine_tuned, **rows}


def columns(ref: dict) -> tuple[list[list[float]], list[bool], list[bool]]:
    """(features, top candidate right, in scope) of every reference question."""
    rows = ref["rows"]
    return [r[0] for r in rows], [bool(r[1]) for r in rows], [bool(r[2]) for r in rows]


def describe(ref: dict) -> str:
    names = ", ".join(f"{s['eval']} ({s['questions']} questions)" for s in ref["sources"])
    if ref.get("fine_tuned"):
        return (
            f"tunelab's reference questions for retrievers fine-tuned from {ref['encoder']}, "
            f"each on its own FAQ: {names}"
        )
    return f"tunelab's reference questions for {ref['encoder']}: {names}"


def measure(kb, questions: list[tuple[str, str | None]]) -> list[list]:
    """Reference rows: each question asked of ``kb`` (calibrated on them) as the live path
    asks it -> [features, right (0/1), in scope (0/1)]."""
    index = {e.id: i for i, e in enumerate(kb.entries)}
    rows = []
    for q, fid in questions:
        cands = kb.search(q)
        right = fid is not None and bool(cands) and cands[0].entry == index[fid]
        feats = [round(float(f), 6) for f in retrieval.features(cands)]
        rows.append([feats, int(right), int(fid is not None)])
    return rows
