"""How much of a question an entry covers: late interaction over the encoder's token vectors
(MaxSim, as in ColBERT: Khattab and Zaharia, 2020), for the top candidates only.

A pooled vector says "this is about threads"; it cannot say that "how do I *kill* a thread"
asks for something no thread entry mentions. Coverage is the mean, over the question's tokens,
of each token's best cosine with any token of the entry's keys (its question, its variants,
its whole answer up to ``MAX_TOKENS``; a passage's text). On the Python FAQ's dev questions
it separates in-scope from out-of-scope questions better than any retrieval score (AUC 0.98
for the best coverage among the top five, against 0.95 for the top cosine), so it feeds the
confidence model, and re-scoring the top five with it (``score + weight * coverage``, the
weight measured on the calibration questions like the fusion weight) lifts Recall@1.

Entry token vectors are computed when a candidate first needs them and kept (float16, up to
``CACHE_BYTES``); nothing is added to the KB folder, so a 100,000-passage KB pays only for
the passages questions reach.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np
import torch

from tunelab.assistant import retrieval

TOP = retrieval.RESCORED  # candidates re-scored
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)  # coverage's weight in the re-scored top, tried
CACHE_BYTES = 256 * 2**20
MAX_TOKENS = 256  # of a key's text read for coverage


class KeyTokens:
    """Token vectors of a KB's keys, encoded on first use (a batch per call) and cached."""

    def __init__(
        self, encoder, keys: list[tuple[int, str, str]], texts: list[str] | None = None
    ) -> None:
        """``texts``: what each key's tokens are read from, when not the key's own text (an
        FAQ answer in full rather than its opening)."""
        self.encoder = encoder
        self.keys = keys
        self.texts = texts or [k[2] for k in keys]
        self.of_entry: dict[int, list[int]] = {}
        for k, (e, _, _) in enumerate(keys):
            self.of_entry.setdefault(e, []).append(k)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0

    def clear(self) -> None:
        """Forget every key's vectors (the encoder's weights changed)."""
        self._cache.clear()
        self._bytes = 0

    def entry(self, e: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """The token vectors of entry ``e``'s keys, without the keys ``exclude`` marks."""
        ks = [k for k in self.of_entry.get(e, []) if exclude is None or not exclude[k]]
        missing = [k for k in ks if k not in self._cache]
        if missing:
            _, toks = self.encoder.encode_tokens(
                [self.texts[k] for k in missing], max_length=MAX_TOKENS
            )
            for k, t in zip(missing, toks, strict=True):
                self._cache[k] = t
                self._bytes += t.nbytes
        for k in ks:
            self._cache.move_to_end(k)
        parts = [self._cache[k] for k in ks]
        while self._bytes > CACHE_BYTES and len(self._cache) > len(ks):
            _, old = self._cache.popitem(last=False)
            self._bytes -= old.nbytes
        return np.concatenate(parts) if parts else np.zeros((0, 1), np.float16)


def coverage(question: np.ndarray, entry: np.ndarray) -> float:
    """Mean over the question's token vectors of the best cosine with the entry's."""
    if len(question) == 0 or len(entry) == 0:
        return 0.0
    # in torch, not NumPy: OpenBLAS's own threads keep spinning after a NumPy matmul and
    # slowed the next question's encoding on two cores from 5 to 60 ms (measured)
    sims = torch.from_numpy(question).float() @ torch.from_numpy(entry).float().T
    return float(sims.max(1).values.mean())


def rescore(
    cands: list[retrieval.Candidate],
    question: np.ndarray,
    tokens: KeyTokens,
    weight: float,
    exclude: np.ndarray | None = None,
) -> list[retrieval.Candidate]:
    """The top ``TOP`` candidates with their coverage, re-ordered by ``score + weight *
    coverage`` (stable for ties), then the rest as they were."""
    top = [
        replace(c, coverage=coverage(question, tokens.entry(c.entry, exclude))) for c in cands[:TOP]
    ]
    return reorder(top + cands[TOP:], weight)


def reorder(cands: list[retrieval.Candidate], weight: float) -> list[retrieval.Candidate]:
    """The top ``TOP`` by ``score + weight * coverage`` (a stable sort), the rest after."""
    top = sorted(cands[:TOP], key=lambda c: -(c.score + weight * (c.coverage or 0.0)))
    return top + cands[TOP:]


def best_weight(ranked: list[list[retrieval.Candidate]], want: list[int | None], figures) -> dict:
    """Coverage's weight with the best MRR (then Recall@1; ties: the smaller weight) on the
    calibration questions, from candidates whose top already carries its coverage."""
    tried = {w: figures([reorder(c, w) for c in ranked], want) for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (tried[w].get("mrr", 0), tried[w].get("recall_at_1", 0), -w))
    return {"weight": best, "top": TOP, "tried": {str(w): tried[w] for w in WEIGHTS}}
