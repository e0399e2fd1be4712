"""The calibration set of a knowledge base (see ``confidence``), its features, and the
retrieval figures the build records and the benchmark reports (Recall@1, Recall@5, MRR,
hand-off rates)."""

from __future__ import annotations

import random
import re

import numpy as np

from tunelab.assistant import confidence, coverage, prior, retrieval
from tunelab.errors import TunelabError

SYNTHETIC_LIMIT = 600  # entries sampled for a calibration set made from the FAQ itself


def read_questions(path: str, known: set[str]) -> list[tuple[str, str | None]]:
    """A validation or evaluation file: JSONL or CSV with ``question`` and ``faq_id`` (the
    entry that answers it; empty or null for a question to hand off)."""
    import csv
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise TunelabError(f"{p}: file not found")
    rows: list[tuple[int, dict]] = []
    with p.open(encoding="utf-8", newline="") as f:
        if p.suffix.lower() in (".jsonl", ".json"):
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append((n, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise TunelabError(f"{p}:{n}: not a JSON object ({e.msg})") from None
        else:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, r) for r in reader]
    out = []
    for n, r in rows:
        q = r.get("question") if isinstance(r, dict) else None
        if not isinstance(q, str) or not q.strip():
            raise TunelabError(f"{p}:{n}: field 'question' is missing or empty")
        fid = r.get("faq_id") or None
        if fid is not None and str(fid) not in known:
            raise TunelabError(f"{p}:{n}: field 'faq_id' = {fid!r} is not an entry of the KB")
        out.append((q.strip(), None if fid is None else str(fid)))
    return out


def synthetic(kb, seed: int = 0) -> list[tuple[str, int | None, np.ndarray]]:
    """(question, entry or None, keys to leave out) made from the FAQ: a variant (or, for an
    entry without any, the question itself) with that key left out -> its entry; the question
    with the whole entry left out -> a hand-off. A KB of documents only: the start of each
    passage's longest sentence -> its passage, and with the passage left out -> a hand-off."""
    faq = [i for i, e in enumerate(kb.entries) if e.kind == "faq"]
    if not faq:  # documents only: a passage's longest sentence, cut to 12 words
        faq = list(range(len(kb.entries)))
    rng = random.Random(seed)
    if len(faq) > SYNTHETIC_LIMIT:
        faq = sorted(rng.sample(faq, SYNTHETIC_LIMIT))
    out: list[tuple[str, int | None, np.ndarray]] = []
    keys_of: dict[int, list[int]] = {}
    for k, (e, _, _) in enumerate(kb.keys):
        keys_of.setdefault(e, []).append(k)
    n = len(kb.keys)
    for i in faq:
        own = keys_of[i]
        whole = np.zeros(n, dtype=bool)
        whole[own] = True
        if kb.entries[i].kind == "passage":
            sentence = max(re.split(r"(?<=[.!?。！？])\s*", kb.entries[i].answer), key=len)
            query = " ".join(sentence.split()[:12]) if " " in sentence else sentence[:40]
            out.append((query, i, np.zeros(n, dtype=bool)))
            out.append((query, None, whole))
            continue
        variants = [k for k in own if kb.keys[k][1] == "variant"]
        k = (
            rng.choice(variants)
            if variants
            else next(k for k in own if kb.keys[k][1] == "question")
        )
        mask = np.zeros(n, dtype=bool)
        mask[k] = True
        out.append((kb.keys[k][2], i, mask))
        out.append((kb.entries[i].question, None, whole))
    return out


WEIGHTS = (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)  # BM25's share tried in the fusion


def questions(kb, validation) -> tuple[list[str], list[int | None], list | None, str | None]:
    """(questions, the entry each wants or None, the keys each leaves out or None, the source
    when made from the FAQ): the validation questions, or without them questions made from the
    FAQ (``synthetic``)."""
    if validation:
        index = {e.id: i for i, e in enumerate(kb.entries)}
        return (
            [q for q, _ in validation],
            [None if fid is None else index[fid] for _, fid in validation],
            None,
            None,
        )
    rows = synthetic(kb)
    source = "made from the FAQ (variants or questions left out, entries left out)"
    return [q for q, _, _ in rows], [w for _, w, _ in rows], [m for _, _, m in rows], source


def score(
    kb, qs: list[str], masks: list | None, vecs: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    vecs = kb.encoder.encode(qs) if vecs is None else vecs
    if masks is None:
        return [kb.scores(q, v) for q, v in zip(qs, vecs, strict=True)]
    return [kb.scores(q, v, m) for q, v, m in zip(qs, vecs, masks, strict=True)]


def calibrate(kb, validation, source: str, target: float, log=print) -> confidence.Calibration:
    """Measure the fusion weight and coverage's weight, then fit the confidence and pick the
    threshold, on the validation questions. Without them the weights are measured on questions
    made from the FAQ (an entry's own left-out keys are left out of its coverage too), and the
    confidence is fitted on tunelab's reference questions for the encoder (``prior``): on the
    FAQ's own questions it hands off nearly everything; with no reference rows for the encoder,
    on those anyway, with a warning."""
    qs, want, masks, made = questions(kb, validation)
    source = made or source
    kb.tokens.clear()  # the encoder's mix may have moved since any key was encoded
    vecs, qtoks = kb.encoder.encode_tokens(qs)
    scored = score(kb, qs, masks, vecs)
    fusion = fusion_weight(scored, want)
    kb.bm25_weight = fusion["bm25_weight"]
    kb.coverage_weight = 0.0
    cands = [
        kb.cover(kb.rank(d, b), t, None if masks is None else masks[i])
        for i, ((d, b), t) in enumerate(zip(scored, qtoks, strict=True))
    ]
    cover = coverage.best_weight(cands, want, figures)
    kb.coverage_weight = cover["weight"]
    cands = [coverage.reorder(c, kb.coverage_weight) for c in cands]
    feats = [retrieval.features(c) for c in cands]
    correct = [
        bool(c) and w is not None and c[0].entry == w for c, w in zip(cands, want, strict=True)
    ]
    in_scope = [w is not None for w in want]
    ref = None if validation else prior.find(kb.info["model"], prior.language(kb.entries))
    if ref is not None:
        source = prior.describe(ref)
        log(f"no validation questions: the hand-off confidence is fitted on {source}")
        feats, correct, in_scope = prior.columns(ref)
    elif not validation:
        log(
            "warning: no validation questions and no reference questions for this encoder; the "
            "hand-off threshold is fitted on questions made from the FAQ, which hand off most "
            "real questions: pass --validation with questions your users ask"
        )
    cal = confidence.fit(feats, correct, in_scope, target, source)
    if ref is not None:
        cal.report["reference"] = {
            "encoder": ref["encoder"],
            "fine_tuned_encoder": ref["fine_tuned"],
            "sources": ref["sources"],
        }
    cal.report["retrieval"] = figures(cands, want)
    cal.report["fusion"] = fusion
    cal.report["coverage"] = cover
    return cal


MIXES = (1.0, 0.75, 0.5, 0.25)  # the fine-tuned retriever's share in weight space, tried


def encoder_mix(kb, validation, encode_keys) -> dict:
    """The weight-space mix of a fine-tuned retriever with its base (``Encoder.set_mix``) that
    ranks the calibration questions best: each mix's keys are encoded (``encode_keys()`` ->
    a dense index; the KB's own index serves the encoder's current mix), its best fusion
    measured, and the largest mix kept whose MRR is within one question (1 / n) of the best: a
    smaller difference is not evidence against the fine-tuned weights. The encoder is left at
    the chosen mix, the KB's index with it.

    Without validation questions, the questions made from the FAQ are the retriever's own
    training texts for most entries, which always favour the fine-tuned weights: only those it
    did not train on (the entries ``tune`` held out) are used, and with none the mix is 1."""
    qs, want, masks, _ = questions(kb, validation)
    if not validation:
        seen = kb.encoder.trained_on()
        keep = (
            [] if seen is None else [i for i, q in enumerate(qs) if q.strip().lower() not in seen]
        )
        if not any(want[i] is not None for i in keep):
            return {"mix": kb.encoder.mix, "rule": "no questions the retriever did not train on"}
        qs, want = [qs[i] for i in keep], [want[i] for i in keep]
        masks = [masks[i] for i in keep] if masks is not None else None
    n = max(1, sum(w is not None for w in want))
    indexes = {kb.encoder.mix: kb.dense}
    tried: dict[float, dict] = {}
    for m in MIXES:
        kb.encoder.set_mix(m)
        if m not in indexes:
            indexes[m] = encode_keys()
        kb.dense = indexes[m]
        fusion = fusion_weight(score(kb, qs, masks), want)
        tried[m] = fusion["tried"][str(fusion["bm25_weight"])] | {
            "bm25_weight": fusion["bm25_weight"]
        }
    best = max(t.get("mrr", 0.0) for t in tried.values())
    mix = max(m for m, t in tried.items() if t.get("mrr", 0.0) >= best - 1.0 / n)
    kb.encoder.set_mix(mix)
    kb.dense = indexes[mix]
    return {
        "mix": mix,
        "rule": "largest mix whose MRR is within 1/n of the best (WiSE-FT weight averaging)",
        "tried": {str(m): t for m, t in tried.items()},
    }


def fusion_weight(scored: list[tuple], want: list[int | None]) -> dict:
    """BM25's share in the fused ranking with the best MRR (then Recall@1; ties: the smaller
    share) on the questions that have an entry; every share's figures are kept."""
    from tunelab.assistant import retrieval

    tried = {}
    for w in WEIGHTS:
        cands = [retrieval.rank(d, b, "fused", weight=w) for d, b in scored]
        tried[w] = figures(cands, want)
    best = max(WEIGHTS, key=lambda w: (tried[w].get("mrr", 0), tried[w].get("recall_at_1", 0), -w))
    return {"bm25_weight": best, "tried": {str(w): tried[w] for w in WEIGHTS}}


def figures(cands: list[list[retrieval.Candidate]], want: list[int | None]) -> dict:
    """Recall@1, Recall@5 and MRR over the questions that have an entry."""
    ranks = []
    for c, w in zip(cands, want, strict=True):
        if w is None:
            continue
        order = [x.entry for x in c]
        ranks.append(order.index(w) + 1 if w in order else None)
    if not ranks:
        return {}
    n = len(ranks)
    return {
        "questions": n,
        "recall_at_1": round(sum(r == 1 for r in ranks) / n, 4),
        "recall_at_5": round(sum(r is not None and r <= 5 for r in ranks) / n, 4),
        "mrr": round(sum(1 / r for r in ranks if r) / n, 4),
    }
