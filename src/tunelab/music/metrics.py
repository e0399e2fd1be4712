"""Objective measures of generated melodies against held-out ones, as in MusPy (Dong et al.
2020) and MuseGAN: pitch-class and note-duration histograms (their total-variation distance to
the held-out data), in-key note ratio, empty-bar ratio, note density, and bar-level
repetition (what a first-order Markov chain cannot reproduce, unlike its histograms)."""

from __future__ import annotations

import numpy as np

from tunelab.music.encoding import FIRST_PITCH, notes_of

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)  # natural minor
SCALES = [frozenset((t + s) % 12 for s in scale) for t in range(12) for scale in (MAJOR, MINOR)]
MAX_DURATION = 16  # duration histogram: 1..16 steps, longer ones in the last bin


def pitch_class_histogram(ws: list[list[int]]) -> np.ndarray:
    h = np.zeros(12)
    for w in ws:
        for p, _, _ in notes_of(w):
            h[p % 12] += 1
    return h / max(h.sum(), 1)


def duration_histogram(ws: list[list[int]]) -> np.ndarray:
    h = np.zeros(MAX_DURATION)
    for w in ws:
        for _, _, d in notes_of(w):
            h[min(d, MAX_DURATION) - 1] += 1
    return h / max(h.sum(), 1)


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance of two distributions: 0 the same, 1 disjoint."""
    return float(0.5 * np.abs(a - b).sum())


def best_scale(w: list[int]) -> tuple[int, str, float]:
    """(tonic pitch class, "major" or "minor", in-key ratio) of the scale that holds most of the
    notes; among equals, the one whose tonic sounds longest (so a relative major and minor are
    told apart by where the tune rests)."""
    ns = notes_of(w)
    if not ns:
        return 0, "major", 0.0
    weight = np.zeros(12)
    for p, _, d in ns:
        weight[p % 12] += d
    weight[ns[-1][0] % 12] += 4  # the last note counts extra: tunes end on the tonic
    best = max(
        range(len(SCALES)),
        key=lambda i: (sum(p % 12 in SCALES[i] for p, _, _ in ns), weight[i // 2]),
    )
    return (
        best // 2,
        ("major", "minor")[best % 2],
        sum(p % 12 in SCALES[best] for p, _, _ in ns) / len(ns),
    )


def in_key_ratio(w: list[int]) -> float:
    """The share of notes in the major or natural-minor scale that holds most of them."""
    return best_scale(w)[2]


def bars_of(w: list[int], bar_steps: int) -> list[list[int]]:
    return [w[a : a + bar_steps] for a in range(0, len(w) - bar_steps + 1, bar_steps)]


def empty_bar_ratio(w: list[int], bar_steps: int = 16) -> float:
    bars = bars_of(w, bar_steps)
    return sum(not any(t >= FIRST_PITCH for t in b) for b in bars) / max(1, len(bars))


def note_density(w: list[int], bar_steps: int = 16) -> float:
    """Note starts per bar."""
    return sum(t >= FIRST_PITCH for t in w) / max(1, len(w) // bar_steps)


def repetition(w: list[int], bar_steps: int = 16) -> float:
    """The share of bars after the first whose rhythm and intervals repeat an earlier bar's
    (a transposed repeat counts): the phrase structure of real tunes."""
    shapes = []
    for b in bars_of(w, bar_steps):
        ns = [(p, on % bar_steps, d) for p, on, d in notes_of(b)]
        first = ns[0][0] if ns else 0
        shapes.append(tuple((p - first, on, d) for p, on, d in ns))
    if len(shapes) < 2:
        return 0.0
    return sum(shapes[i] in shapes[:i] for i in range(1, len(shapes))) / (len(shapes) - 1)


def groove_consistency(w: list[int], bar_steps: int = 16) -> float:
    """MusPy's groove consistency: 1 - the mean Hamming distance of consecutive bars' onset
    patterns (1: every bar has the same rhythm)."""
    bars = [[t >= FIRST_PITCH for t in b] for b in bars_of(w, bar_steps)]
    if len(bars) < 2:
        return 1.0
    pairs = zip(bars, bars[1:], strict=False)
    d = [sum(x != y for x, y in zip(a, b, strict=True)) / bar_steps for a, b in pairs]
    return 1.0 - float(np.mean(d))


def summary(ws: list[list[int]], reference: list[list[int]], bar_steps: int = 16) -> dict:
    """Every measure of windows ``ws``, with the histogram distances to ``reference``."""
    mean = lambda f: float(np.mean([f(w) for w in ws])) if ws else 0.0  # noqa: E731
    return {
        "n": len(ws),
        "pitch_class_distance": total_variation(
            pitch_class_histogram(ws), pitch_class_histogram(reference)
        ),
        "duration_distance": total_variation(duration_histogram(ws), duration_histogram(reference)),
        "in_key_ratio": mean(in_key_ratio),
        "empty_bar_ratio": mean(lambda w: empty_bar_ratio(w, bar_steps)),
        "note_density": mean(lambda w: note_density(w, bar_steps)),
        "repetition": mean(lambda w: repetition(w, bar_steps)),
        "groove_consistency": mean(lambda w: groove_consistency(w, bar_steps)),
        "polyphony": 1.0 if ws else 0.0,  # melodies: one note at a time by construction
    }
