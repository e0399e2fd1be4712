"""The baselines every music model is measured against: a random melody (uniform pitches in
the training range, durations drawn from the training data's) and a first-order Markov chain
over the event tokens, trained on the same windows."""

from __future__ import annotations

import numpy as np

from tunelab.music.encoding import FIRST_PITCH, NO_EVENT, NOTE_OFF, VOCAB, notes_of


class Markov:
    """P(token | previous token), add-``alpha`` smoothed over the tokens seen in training;
    the first token from the training windows' first tokens."""

    def __init__(self, ws: list[list[int]], alpha: float = 0.01) -> None:
        counts = np.zeros((VOCAB, VOCAB))
        first = np.zeros(VOCAB)
        for w in ws:
            first[w[0]] += 1
            for a, b in zip(w, w[1:], strict=False):
                counts[a, b] += 1
        seen = (counts.sum(0) + first) > 0
        self.trans = (counts + alpha) * seen
        self.trans /= self.trans.sum(1, keepdims=True)
        self.first = first / first.sum()

    def sample(self, n: int, length: int, seed: int = 0) -> list[list[int]]:
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(n):
            w = [int(rng.choice(VOCAB, p=self.first))]
            while len(w) < length:
                w.append(int(rng.choice(VOCAB, p=self.trans[w[-1]])))
            out.append(w)
        return out

    def log_likelihood(self, ws: list[list[int]]) -> float:
        """Mean log-likelihood per token of ``ws`` (transitions only)."""
        lp = [np.log(self.trans[a, b] + 1e-12) for w in ws for a, b in zip(w, w[1:], strict=False)]
        return float(np.mean(lp)) if lp else 0.0


def random_melodies(ref: list[list[int]], n: int, length: int, seed: int = 0) -> list[list[int]]:
    """Uniform pitches over the reference's range, durations drawn from the reference's."""
    rng = np.random.default_rng(seed)
    notes = [x for w in ref for x in notes_of(w)]
    lo, hi = min(p for p, _, _ in notes), max(p for p, _, _ in notes)
    durs = [d for _, _, d in notes]
    out = []
    for _ in range(n):
        w: list[int] = []
        while len(w) < length:
            d = int(rng.choice(durs))
            w += [FIRST_PITCH + int(rng.integers(lo, hi + 1))] + [NO_EVENT] * (d - 1)
        w = w[:length]
        out.append(w)
    return out


__all__ = ["Markov", "random_melodies", "NOTE_OFF"]
