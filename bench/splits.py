"""Data files the bench scripts share: the first rows of a split, as model selection uses."""

from __future__ import annotations

import csv
from pathlib import Path


def first_rows(src: Path, dst: Path, n: int = 300) -> Path:
    """Write the header and the first ``n`` rows of the CSV ``src`` to ``dst``."""
    with open(src, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(dst, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:n])
    return dst
