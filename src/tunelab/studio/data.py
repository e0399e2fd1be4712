"""The Data page's work: the bundled sets, uploads kept under the runs folder, and a preview of
a file read by the task's own reader, so a bad file gets the very message ``tunelab train``
prints for it (file, line, field).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.files import atomic_write_bytes

UPLOAD_LIMIT = 50 * 1024 * 1024  # bytes; documented in the README and `tunelab studio --help`
FORMATS = (".csv", ".tsv", ".jsonl", ".txt")
SAFE = re.compile(r"[^A-Za-z0-9._-]+")
BUNDLED = Path(__file__).resolve().parents[3] / "data"  # the repository's data/ folder


def uploads_dir(runs_dir: str | Path) -> Path:
    return Path(runs_dir) / ".studio" / "uploads"


def bundled_sets() -> list[dict]:
    """The labelled sets that ship with tunelab: name and split files."""
    out = []
    if BUNDLED.is_dir():
        for d in sorted(p for p in BUNDLED.iterdir() if p.is_dir()):
            splits = {s: str(d / f"{s}.csv") for s in ("train", "validation", "test")}
            if all(Path(f).is_file() for f in splits.values()):
                out.append({"name": d.name, **splits})
    return out


def save_upload(runs_dir: str | Path, filename: str, body: bytes) -> Path:
    """Store an uploaded file under the runs folder's uploads, under a safe name of its own
    (directories and odd characters dropped; an existing name gets a number)."""
    name = SAFE.sub("_", Path(filename.replace("\\", "/")).name).lstrip(".")
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise TunelabError(
            f"{filename}: unsupported file type {suffix or '(none)'}; use {', '.join(FORMATS)}"
        )
    if len(body) > UPLOAD_LIMIT:
        raise TunelabError(f"{filename}: over the upload limit of {UPLOAD_LIMIT:,} bytes")
    folder = uploads_dir(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / name, 1
    while target.exists():
        n += 1
        target = folder / f"{Path(name).stem}-{n}{suffix}"
    atomic_write_bytes(target, body)
    return target


def allowed_path(path: str, runs_dir: str | Path) -> Path:
    """``path`` if it is a bundled set's file or an upload, else an error: the page reads
    nothing else from the disk."""
    p = Path(path).resolve()
    roots = [BUNDLED.resolve(), uploads_dir(runs_dir).resolve()]
    if not any(p.is_relative_to(r) for r in roots) or not p.is_file():
        raise TunelabError(f"{path}: not a bundled set or an uploaded file")
    return p


def preview(
    path: str,
    task_name: str,
    text_column: str | None = None,
    label_column: str | None = None,
    rows: int = 20,
) -> dict[str, Any]:
    """The file as the task reads it: the first ``rows`` examples, the label counts (or the
    number of values, for regression), a histogram of text lengths in characters, or the
    reader's error (the CLI's message) under ``error``."""
    from tunelab.tasks import get_task

    task = get_task(task_name)
    text_col = text_column or task.default_columns[0]
    label_col = label_column or task.default_columns[1]
    try:
        ex = task.read_examples(path, text_col, label_col)
    except TunelabError as e:
        return {"error": str(e), "path": path}
    texts = [_text(t) for t in ex.texts]
    labels, values = _distribution(ex.labels, qa=task.read_inputs is not None)
    lengths = [len(t) for t in texts]
    return {
        "path": path,
        "task": task.name,
        "columns": [text_col, label_col],
        "n": len(texts),
        "rows": [
            {"line": line, "text": t, "label": _shown(label)}
            for line, t, label in zip(ex.lines[:rows], texts[:rows], ex.labels[:rows], strict=True)
        ],
        "labels": dict(labels.most_common(50)),
        "values": histogram(values) if values else None,
        "lengths": histogram(lengths),
    }


def histogram(values: list[int] | list[float], bins: int = 20) -> dict:
    """Equal-width bins over ``values``: edges (bins + 1) and counts. Whole numbers (text
    lengths) get whole-number edges; real values (regression targets) real ones."""
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(values), max(values)
    whole = all(isinstance(v, int) for v in values)
    width = max(1, -(-(hi - lo + 1) // bins)) if whole else (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) // width))] += 1
    edges = [lo + i * width for i in range(bins + 1)]
    return {"edges": edges if whole else [round(e, 4) for e in edges], "counts": counts}


def _text(t: Any) -> str:
    """What a row's input shows as: a text, tokens joined, a QA pair's question, a prompt."""
    if isinstance(t, str):
        return t
    if isinstance(t, (list, tuple)) and all(isinstance(x, str) for x in t):
        return " ".join(t)
    question = getattr(t, "question", None)
    return question if isinstance(question, str) else str(t)


def _distribution(labels: list, qa: bool) -> tuple[Counter, list[float]]:
    """Label counts (each label of a multi-label row and each tag of a tagged row counted
    once), or the values of a regression target; nothing for question answering."""
    counts: Counter = Counter()
    values: list[float] = []
    if qa:
        return counts, values
    for x in labels:
        if isinstance(x, (list, tuple)):
            counts.update(str(v) for v in x)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            values.append(float(x))
        else:
            counts[str(x)] += 1
    return counts, values


def _shown(x: Any) -> Any:
    if isinstance(x, (list, tuple)) and all(isinstance(v, str) for v in x):
        return " ".join(x)[:200]  # tags, or the labels of a multi-label row
    return x if isinstance(x, (str, int, float)) else str(x)[:200]
