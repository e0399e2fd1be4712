"""A prepared data set (:func:`load`), and its training windows as tensors of the models'
compact classes, with random transposition (key augmentation) drawn per window per batch,
inside the range."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tunelab.errors import TunelabError
from tunelab.music import encoding
from tunelab.music.corpus import Piece
from tunelab.music.metrics import best_scale
from tunelab.music.vae import to_classes

DATASET, PIECES = "dataset.json", "pieces.jsonl"  # what `tunelab music prepare` writes


def load(folder: str) -> tuple[dict, dict[str, list]]:
    """A prepared data set: its record and its pieces by split."""
    from tunelab.music import corpus

    d = Path(folder)
    if not (d / DATASET).is_file():
        raise TunelabError(f"{d}: not a prepared music data set (run `tunelab music prepare`)")
    record = json.loads((d / DATASET).read_text(encoding="utf-8"))
    by_id = {p.id: p for p in corpus.read_pieces(d / PIECES)}
    return record, {s: [by_id[i] for i in ids] for s, ids in record["split"].items()}


def windows_of(
    pieces: list[Piece], bars: int, mode: str | None = None, bar_steps: int = 16
) -> list[list[int]]:
    """Every ``bars``-bar window of ``pieces``; with ``mode`` (major/minor) only the windows of
    pieces in that mode, judged from the notes of the whole piece (the scale that holds most of
    them, its last note weighing as the tonic): many sources give only a key signature."""
    out = []
    for p in pieces:
        ws = encoding.windows(p, bars, bar_steps=bar_steps)
        if ws and mode and best_scale(encoding.tokens(p))[1] != mode:
            continue
        out += ws
    return out


def piece_modes(pieces: list[Piece], bars: int, bar_steps: int = 16) -> list[str]:
    """The mode of each window :func:`windows_of` gives (in its order): its whole piece's."""
    out = []
    for p in pieces:
        n = len(encoding.windows(p, bars, bar_steps=bar_steps))
        if n:
            out += [best_scale(encoding.tokens(p))[1]] * n
    return out


def as_tensor(ws: list[list[int]]) -> torch.Tensor:
    return torch.tensor([to_classes(w) for w in ws], dtype=torch.long)


class Windows:
    """Windows as classes, with each window's allowed transpositions (within ``shifts`` and the
    range), so a batch can move every window to a random key without leaving the range."""

    def __init__(self, ws: list[list[int]], shifts: tuple[int, int] = (-5, 6)) -> None:
        if not ws:
            raise TunelabError("no training windows (check --data, --bars and --mode)")
        self.x = as_tensor(ws)
        pitch = self.x >= 2
        big = torch.where(pitch, self.x, torch.full_like(self.x, 10_000)).min(1).values
        small = torch.where(pitch, self.x, torch.full_like(self.x, -1)).max(1).values
        top = 2 + encoding.HIGH - encoding.LOW
        self.lo = torch.clamp(2 - big, min=shifts[0])  # the lowest note may go down to class 2
        self.hi = torch.clamp(top - small, max=shifts[1])

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int, generator: torch.Generator, transpose: bool = True):
        """(indices, windows) per batch of a shuffled epoch; the indices let a caller pick
        what it keeps per window (the GAN's modes)."""
        order = torch.randperm(len(self.x), generator=generator)
        for a in range(0, len(order), batch_size):
            idx = order[a : a + batch_size]
            x = self.x[idx]
            if transpose:
                lo, hi = self.lo[idx], self.hi[idx]
                u = torch.rand(len(idx), generator=generator)
                k = lo + (u * (hi - lo + 1).float()).long().clamp(max=(hi - lo))
                x = torch.where(x >= 2, x + k.unsqueeze(1), x)
            yield idx, x
