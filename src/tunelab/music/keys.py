"""Keys of generated melodies. Models train on windows moved to random keys (augmentation), so
what they learn is a melody relative to its key, with every key about equally likely; a sample
is then placed in a key drawn from the training data's own keys (per mode), as a key-normalised
model samples p(key) p(melody | key). Placing moves notes, it never drops a sample."""

from __future__ import annotations

import random

from tunelab.music import encoding
from tunelab.music.metrics import best_scale

MODES = ("major", "minor")


def key_histogram(ws: list[list[int]]) -> dict[str, list[int]]:
    """How many windows have each tonic (C = 0 ... B = 11), per mode."""
    out = {m: [0] * 12 for m in MODES}
    for w in ws:
        tonic, mode, _ = best_scale(w)
        out[mode][tonic] += 1
    return out


def place_in_keys(
    ws: list[list[int]], keys: dict[str, list[int]], seed: int = 0
) -> list[list[int]]:
    """Each window moved to a tonic drawn from ``keys`` for its mode (the nearest octave that
    stays in range; a window no transposition fits stays where it is)."""
    rng = random.Random(seed)
    out = []
    for w in ws:
        tonic, mode, _ = best_scale(w)
        weights = keys.get(mode) or [1] * 12
        if not any(weights):
            weights = [a + b for a, b in zip(keys["major"], keys["minor"], strict=True)]
        target = rng.choices(range(12), weights=weights)[0]
        k = (target - tonic) % 12
        moved = None
        for shift in sorted((k, k - 12), key=abs):
            moved = encoding.transpose(w, shift)
            if moved is not None:
                break
        out.append(moved if moved is not None else w)
    return out
