"""Where posts come from: a file or folder replayed (CSV, TSV, JSONL or TXT, for demos,
backfills and tests), a growing JSONL file followed like ``tail -F``, or standard input.

Every source yields :class:`tunelab.store.posts.Post` in order. A post has an ``id`` (a TXT
line's number when the file has none), a ``text``, a ``time`` (ISO 8601, or seconds since the
epoch; absent: the time it was read) and a ``source`` (default: the file's name). A malformed
post is a DataError naming the file, the line and the field, as the training readers do.

``--rate`` paces a replay (posts per second of wall time) and nothing else: windows and alerts
use each post's own time, so a replay at any rate gives the same alerts.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from tunelab.data.readers import read_rows
from tunelab.errors import DataError
from tunelab.store.posts import Post

FORMATS = (".csv", ".tsv", ".jsonl", ".txt")


def parse_time(value: Any, path: str, line: int) -> datetime:
    """An ISO 8601 text (a trailing Z, or no zone: UTC) or epoch seconds -> an aware datetime."""
    if value is None or value == "":
        return datetime.now(timezone.utc)
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), timezone.utc)
        text = str(value).strip()
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), timezone.utc)
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise DataError(
            path, line, f"time {value!r} is not ISO 8601 or epoch seconds", field="time"
        ) from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def to_post(raw: dict, path: str, line: int, default_source: str) -> Post:
    """One post from a row or JSON object, checked."""
    text = raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, "missing or empty text", field="text")
    pid = raw.get("id", line)
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or str(pid).strip() == "":
        raise DataError(path, line, f"id {pid!r} must be a non-empty text or number", field="id")
    source = raw.get("source") or default_source
    if not isinstance(source, str):
        raise DataError(path, line, f"source {source!r} must be text", field="source")
    return Post(str(pid), text, parse_time(raw.get("time"), path, line), source[:100])


def read_file(path: str | Path, source: str | None = None) -> Iterator[Post]:
    """Every post of one file, in file order; ``source``: of posts that name none (default:
    the file's name)."""
    p = str(path)
    source = source or Path(p).stem
    if Path(p).suffix.lower() == ".txt":
        for row in read_rows(p):
            yield to_post({"text": row.values["text"]}, p, row.line, source)
        return
    for row in read_rows(p, required=("text",)):
        yield to_post(row.values, p, row.line, source)


def data_files(target: str | Path, recursive: bool = False) -> list[Path]:
    """``target`` if it is a file, else the data files of the folder (``recursive``: of its
    subfolders too), sorted; none, or no such path, is a DataError."""
    p = Path(target)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise DataError(str(p), 1, "file or folder not found")
    found = p.rglob("*") if recursive else p.iterdir()
    files = sorted(f for f in found if f.is_file() and f.suffix.lower() in FORMATS)
    if not files:
        raise DataError(str(p), 1, f"no {', '.join(FORMATS)} files in the folder")
    return files


def replay(target: str | Path, rate: float | None = None) -> Iterator[Post]:
    """The posts of a file, or of every data file in a folder (in name order), at most
    ``rate`` a second (None: as fast as they are taken)."""
    start, n = time.monotonic(), 0
    for f in data_files(target):
        for post in read_file(f):
            if rate:
                wait = start + n / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            n += 1
            yield post


def _json_lines(
    stream: Iterable[str], path: str, source: str, first_line: int = 1
) -> Iterator[Post]:
    for i, text in enumerate(stream, first_line):
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, i, f"not valid JSON ({e.msg})") from None
        if not isinstance(raw, dict):
            raise DataError(path, i, "expected a JSON object with text (and id, time, source)")
        yield to_post(raw, path, i, source)


def stdin_posts(stream: IO[str] | None = None) -> Iterator[Post]:
    """JSONL posts from standard input, one object a line, until it closes."""
    yield from _json_lines(stream or sys.stdin, "<stdin>", "stdin")


def follow(path: str | Path, poll: float = 0.5, stop=None) -> Iterator[Post]:
    """Posts appended to a JSONL file, as ``tail -F``: from its end when it exists, again from
    the start when it is replaced or truncated (log rotation); a half-written last line waits
    for its newline. ``stop()`` returning True ends the loop (tests, shutdown)."""
    p = Path(path)
    fh, inode, line = None, None, 1
    pending = ""
    while not (stop and stop()):
        try:
            st = p.stat()
        except FileNotFoundError:
            st = None
        if st is not None and (fh is None or st.st_ino != inode or st.st_size < fh.tell()):
            if fh is not None:
                fh.close()
            first = fh is None  # the file as found at start: only what is appended later
            fh, inode, line, pending = open(p, encoding="utf-8"), st.st_ino, 1, ""
            if first:
                line += sum(1 for _ in fh)
        if fh is not None:
            chunk = fh.read()
            if chunk:
                pending += chunk
                complete, _, pending = pending.rpartition("\n")
                if complete:
                    lines = complete.split("\n")
                    yield from _json_lines(iter(lines), str(p), p.stem, line)
                    line += len(lines)
                continue
        time.sleep(poll)
    if fh is not None:
        fh.close()
