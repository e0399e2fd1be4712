"""Retrieval over a knowledge base's keys (an FAQ entry's question, variants and answer; a
passage's title and text): BM25 and dense scores per key, the best key per entry, then one
ranking of entries.

``mode`` picks it: ``bm25``, ``dense``, ``rrf`` (reciprocal rank fusion, Cormack et al., 2009:
1 / (60 + rank) summed over the two rankings) or ``fused`` (the default): a convex combination
``(1 - w) * cosine + w * bm25 / best bm25`` whose weight ``w`` the KB measures on its
calibration questions (``calibrate.fusion_weight``) instead of fixing it. Each candidate keeps
every score, which the confidence model reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RRF_K = 60
DEPTH = 50  # entries each ranking contributes to the fusion
RESCORED = 5  # the top that coverage.py re-scores (and the features read)


@dataclass
class Candidate:
    entry: int  # index into the KB's entries
    score: float  # the ranking's own score (fused: the RRF sum)
    dense: float  # best cosine over the entry's keys (0 when not retrieved densely)
    bm25: float  # best BM25 over the entry's keys
    dense_rank: int | None
    bm25_rank: int | None
    coverage: float | None = None  # late interaction (coverage.py), for the top few only


def per_entry(key_scores: np.ndarray, key_entry: np.ndarray, n_entries: int) -> np.ndarray:
    """The best key score of each entry (-inf for an entry with no scored key)."""
    best = np.full(n_entries, -np.inf, dtype=np.float32)
    np.maximum.at(best, key_entry, key_scores)
    return best


def rank(
    dense: np.ndarray,
    bm25: np.ndarray,
    mode: str = "fused",
    depth: int = DEPTH,
    weight: float = 0.1,
) -> list[Candidate]:
    """Candidates, best first, from per-entry dense and BM25 scores (-inf: not retrieved);
    ``weight``: BM25's share in ``fused``."""
    n = len(dense)
    d_order = _top(dense, depth)
    b_order = _top(np.where(bm25 > 0, bm25, -np.inf), depth)  # no shared word: not retrieved
    d_rank = {int(e): r for r, e in enumerate(d_order)}
    b_rank = {int(e): r for r, e in enumerate(b_order)}
    if mode == "dense":
        order, score = list(d_order), {int(e): float(dense[e]) for e in d_order}
    elif mode == "bm25":
        order, score = list(b_order), {int(e): float(bm25[e]) for e in b_order}
    elif mode == "fused":
        pool = set(d_rank) | set(b_rank)
        finite = dense[np.isfinite(dense)]
        floor = float(finite.min()) if finite.size else 0.0  # not retrieved densely
        best = max((float(bm25[e]) for e in b_rank), default=0.0) or 1.0
        score = {
            e: (1 - weight) * (float(dense[e]) if np.isfinite(dense[e]) else floor)
            + weight * (float(bm25[e]) / best if e in b_rank else 0.0)
            for e in pool
        }
        order = sorted(score, key=lambda e: (-score[e], d_rank.get(e, n)))
    else:
        score = {}
        for ranks in (d_rank, b_rank):
            for e, r in ranks.items():
                score[e] = score.get(e, 0.0) + 1.0 / (RRF_K + r + 1)
        order = sorted(score, key=lambda e: (-score[e], d_rank.get(e, n)))
    return [
        Candidate(
            entry=int(e),
            score=score[int(e)],
            dense=float(dense[e]) if np.isfinite(dense[e]) else 0.0,
            bm25=float(bm25[e]) if np.isfinite(bm25[e]) else 0.0,
            dense_rank=d_rank.get(int(e)),
            bm25_rank=b_rank.get(int(e)),
        )
        for e in order
    ]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    finite = np.isfinite(scores)
    if not finite.any():
        return np.array([], dtype=int)
    k = min(k, int(finite.sum()))
    idx = np.argpartition(-np.where(finite, scores, -np.inf), k - 1)[:k]
    return idx[np.argsort(-scores[idx], kind="stable")]


def features(cands: list[Candidate]) -> list[float]:
    """What the confidence model reads about a question's candidates: the top ranking score and
    its margin over the next, the top cosine and its margin, the top BM25 score's share of the
    top five, whether the dense and the BM25 rankings agree on the top entry, and the top
    entry's ranks in each; then how much of the question the top entry covers and the best
    coverage among the re-scored top (``coverage.py``; 0 where it was not measured)."""
    if not cands:
        return [0.0] * len(FEATURES)
    top = cands[0]
    second = cands[1] if len(cands) > 1 else None
    b5 = sum(c.bm25 for c in cands[:5]) or 1.0
    return [
        top.score,
        top.score - (second.score if second else 0.0),
        top.dense,
        top.dense - (second.dense if second else 0.0),
        top.bm25 / b5,
        1.0 if top.dense_rank == 0 and top.bm25_rank == 0 else 0.0,
        1.0 / (1 + (top.dense_rank if top.dense_rank is not None else DEPTH)),
        1.0 / (1 + (top.bm25_rank if top.bm25_rank is not None else DEPTH)),
        top.coverage or 0.0,
        max((c.coverage or 0.0) for c in cands[:RESCORED]),
    ]


FEATURES = (
    "top_score",
    "score_margin",
    "top_cosine",
    "cosine_margin",
    "bm25_share",
    "rankings_agree",
    "dense_rank_inverse",
    "bm25_rank_inverse",
    "top_coverage",
    "best_coverage",
)
