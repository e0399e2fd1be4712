"""The replay buffer of continual learning: a bounded, class-balanced sample of earlier training
examples, kept in the run folder (``replay.jsonl``) so a later stage can mix it in.

Balanced means every class gets an equal share of the room, and a class with fewer examples
than its share gives the rest to the others (water-filling), so the buffer is full whenever
there are enough examples. Sampling is uniform within a class and seeded.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from tunelab.errors import DataError
from tunelab.files import atomic_write_text

REPLAY_FILE = "replay.jsonl"


def balanced_counts(available: dict[str, int], room: int) -> dict[str, int]:
    """How many of each class to keep: equal shares of ``room``, a class's unused share going
    to the classes that have more; never more than a class has."""
    take: dict[str, int] = {}
    left = min(room, sum(available.values()))
    order = sorted(available, key=lambda c: (available[c], c))  # the smallest first
    for i, c in enumerate(order):
        take[c] = min(available[c], left // (len(order) - i))  # its share of what is left
        left -= take[c]
    return take


def balanced_sample(rows: list[dict], room: int, seed: int) -> list[dict]:
    """At most ``room`` of ``rows`` (dicts with a ``label``), class-balanced, in a seeded
    random order within each class; the result is sorted by class, then drawn order."""
    by_class: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_class[str(r["label"])].append(r)
    counts = balanced_counts({c: len(v) for c, v in by_class.items()}, room)
    rng = random.Random(seed)
    out: list[dict] = []
    for c in sorted(by_class):
        out.extend(rng.sample(by_class[c], counts[c]))
    return out


def update(buffer: list[dict], new: list[dict], size: int, seed: int) -> list[dict]:
    """The buffer after a stage: a balanced sample of the old buffer and the stage's own
    training examples, at most ``size``. An old class keeps its place as new classes arrive
    (each class's share shrinks, evenly)."""
    return balanced_sample(buffer + new, size, seed)


def write(folder: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(folder / REPLAY_FILE, text, what="replay buffer")


def read(folder: Path) -> list[dict] | None:
    """The buffer a run folder keeps, or None when it keeps none."""
    f = folder / REPLAY_FILE
    if not f.is_file():
        return None
    rows = []
    for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
        try:
            r = json.loads(line)
            rows.append({"text": str(r["text"]), "label": str(r["label"]), "stage": r["stage"]})
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(str(f), i, f"not a replay buffer row ({type(e).__name__})") from None
    return rows
