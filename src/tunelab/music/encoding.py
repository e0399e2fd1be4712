"""Melodies as event tokens, one per sixteenth-note step (MusicVAE's melody encoding): 0 = no
event (the previous note sounds on, or silence goes on), 1 = note off, 2 + p = note p starts.
Windows are whole bars; the data set is split by piece, never by bar, and transposed for
augmentation inside a pitch range."""

from __future__ import annotations

import random

from tunelab.music.corpus import Piece

NO_EVENT, NOTE_OFF, FIRST_PITCH = 0, 1, 2
VOCAB = FIRST_PITCH + 128
LOW, HIGH = 48, 84  # C3..C6: the range windows are kept in (MusicVAE keeps 48-84 too)


def tokens(piece: Piece) -> list[int]:
    """The whole piece, a token per step (a note off where a rest begins)."""
    if not piece.notes:
        return []
    end = max(on + d for _, on, d in piece.notes)
    out = [NO_EVENT] * end
    for i, (pitch, on, dur) in enumerate(piece.notes):
        out[on] = FIRST_PITCH + pitch
        nxt = piece.notes[i + 1][1] if i + 1 < len(piece.notes) else None
        if on + dur < end and nxt != on + dur:
            out[on + dur] = NOTE_OFF
    return out


def notes_of(seq: list[int]) -> list[tuple[int, int, int]]:
    """(pitch, onset, duration) of a token sequence: the inverse of :func:`tokens`."""
    out: list[tuple[int, int, int]] = []
    start = pitch = None
    for t, tok in enumerate([*seq, NOTE_OFF]):
        if tok >= FIRST_PITCH or tok == NOTE_OFF:
            if pitch is not None and start is not None:
                out.append((pitch, start, t - start))
                pitch = None
            if tok >= FIRST_PITCH:
                start, pitch = t, tok - FIRST_PITCH
    return out


def windows(piece: Piece, bars: int = 2, hop_bars: int = 1, bar_steps: int = 16) -> list[list[int]]:
    """Bar-aligned windows of ``bars`` bars, every ``hop_bars``: only pieces whose bar is
    ``bar_steps`` long (16: 4/4 and 2/2), windows with at least two note starts, in range."""
    if piece.bar_steps != bar_steps:
        return []
    seq = tokens(piece)
    size, hop = bars * bar_steps, hop_bars * bar_steps
    out = []
    for a in range(0, len(seq) - size + 1, hop):
        w = seq[a : a + size]
        pitches = [t - FIRST_PITCH for t in w if t >= FIRST_PITCH]
        if len(pitches) >= 2 and LOW <= min(pitches) and max(pitches) <= HIGH:
            out.append(w)
    return out


def transpose(seq: list[int], k: int) -> list[int] | None:
    """``seq`` moved by ``k`` semitones; None when a note leaves the range."""
    out = [t + k if t >= FIRST_PITCH else t for t in seq]
    pitches = [t - FIRST_PITCH for t in out if t >= FIRST_PITCH]
    if pitches and (min(pitches) < LOW or max(pitches) > HIGH):
        return None
    return out


def augment(ws: list[list[int]], shifts: range = range(-5, 7)) -> list[list[int]]:
    """Every window in every key ``shifts`` reaches within the range (key augmentation)."""
    out = []
    for w in ws:
        for k in shifts:
            t = transpose(w, k)
            if t is not None:
                out.append(t)
    return out


def split(pieces: list[Piece], seed: int = 42, ratios=(0.8, 0.1, 0.1)) -> dict[str, list[Piece]]:
    """train / validation / test by piece (a seeded shuffle): no piece is in two splits."""
    order = sorted(pieces, key=lambda p: p.id)
    random.Random(seed).shuffle(order)
    n = len(order)
    a, b = round(ratios[0] * n), round((ratios[0] + ratios[1]) * n)
    return {"train": order[:a], "validation": order[a:b], "test": order[b:]}
