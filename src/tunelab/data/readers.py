"""Read CSV, TSV and JSONL files into rows, rejecting bad input with file:line: field messages.

Every row keeps the 1-based line number it started on, so later checks (an unknown label at
evaluation time, an empty text) can point the user at the exact place in their file. Every
reader, these and the task-specific ones (CoNLL, SQuAD JSON), ends in ``check_rows``: one
length limit per field and one rule for missing values (``tunelab.data_policy``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.data_policy import (
    ABSENT,
    ReadPolicy,
    current_policy,
    is_missing,
    length_message,
    measure,
    missing_message,
    shown,
)
from tunelab.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt"}


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, Any]


# (field, value, line or None for the row's line) of a missing value nested in a row
MissingIn = Callable[[Row], tuple[str, Any, int | None] | None]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Lines of a text file as an editor numbers them (\\n, \\r\\n or \\r; not the other
    separators ``str.splitlines`` also breaks on, which may sit inside a JSON string)."""
    return _LINE_BREAK.split(text)


def read_file(path: str) -> str:
    """A file's text (UTF-8, with or without a BOM); every failure is a DataError."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a folder, expected a file") from None
    except PermissionError:
        raise DataError(path, None, "permission denied") from None
    except OSError as e:
        raise DataError(path, None, f"cannot read: {e.strerror or e}") from None
    return _decode(path, raw)


def _decode(path: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(
            path,
            line,
            f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {col}); save the file as UTF-8",
        ) from None


def file_format(path: str) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise DataError(
            path,
            None,
            f"unsupported file type '{Path(path).suffix}' (use {', '.join(sorted(FORMATS))})",
        )
    return fmt


def _delimited(path: str, text: str, delimiter: str) -> list[Row]:
    # No field can be longer than the whole text, so the csv module's own limit (131,072 by
    # default) never fires: the one length limit, with its flag, is check_rows's. Only raised,
    # never lowered (the setting is process-wide); capped at what a C long holds everywhere.
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text) + 1, 2**31 - 1)))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[Row] = []
    header: list[str] | None = None
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or all(not c.strip() for c in record):
                continue  # blank line
            if header is None:
                header = [h.strip() for h in record]
                dup = {h for h in header if header.count(h) > 1}
                if dup:
                    raise DataError(
                        path, line, f"duplicate column name '{sorted(dup)[0]}' in header"
                    )
                continue
            if len(record) != len(header):
                raise DataError(
                    path,
                    line,
                    f"malformed row: expected {len(header)} fields "
                    f"({', '.join(header)}), found {len(record)}; quote fields that "
                    "contain the delimiter",
                )
            rows.append(Row(line, dict(zip(header, record, strict=True))))
    except csv.Error as e:
        raise DataError(path, reader.line_num or start, f"malformed row: {e}") from None
    if header is None:
        raise DataError(path, 1, "file is empty: expected a header line naming the columns")
    return rows


def _jsonl(path: str, text: str) -> list[Row]:
    rows = []
    # only \n ends a JSON line: a raw U+2028 or \x1c may sit inside a JSON string
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        obj = parse_json(path, i, line)
        if not isinstance(obj, dict):
            raise DataError(path, i, f"expected a JSON object per line, got {type(obj).__name__}")
        rows.append(Row(i, obj))
    return rows


def parse_json(path: str, line: int | None, text: str) -> Any:
    """``json.loads`` whose every failure (bad syntax, nesting too deep, an integer of
    thousands of digits) is a DataError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = e.lineno if line is None else line
        raise DataError(path, where, f"not valid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise DataError(path, line, "not valid JSON (nested too deeply)") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion"
        why = "a number too long to read" if "digits" in str(e) else str(e)
        raise DataError(path, line, f"not valid JSON ({why})") from None


def read_rows(
    path: str | Path,
    required: Sequence[str] = (),
    non_empty: Sequence[str] = (),
    not_null: Sequence[str] = (),
    missing_in: MissingIn | None = None,
) -> list[Row]:
    """Read a .csv/.tsv/.jsonl/.txt file and check it (see ``check_rows``).

    Args:
        path: the file.
        required: columns (JSON keys) every row must have.
        non_empty: columns whose value must be a non-blank string or number.
        not_null: columns that must hold a value, though an empty string is one.
        missing_in: finds a missing value nested inside a row (a tag in a list).
    Returns:
        rows in file order, each with its 1-based starting line number; rows with a missing
        value are dropped when the reading policy says so.
    Raises:
        DataError naming file, line and field.
    """
    path = str(path)
    fmt = file_format(path)
    text = read_file(path)
    if not text.strip():
        raise DataError(path, 1, "file is empty")
    if fmt == "txt":
        rows = [Row(i, {"text": t}) for i, t in enumerate(split_lines(text), 1) if t.strip()]
    elif fmt == "jsonl":
        rows = _jsonl(path, text)
    else:
        rows = _delimited(path, text, "," if fmt == "csv" else "\t")
        if not rows:
            raise DataError(path, 2, "file has a header but no data rows")
    if not rows:
        raise DataError(path, 1, "file has no data rows")
    if fmt in ("csv", "tsv"):
        present = set(rows[0].values)
        for col in required:
            if col not in present:
                raise DataError(
                    path,
                    1,
                    f"missing column '{col}' (found: {', '.join(sorted(present))})"
                    "; choose another with --text-column/--label-column",
                    field=col,
                )
    return check_rows(path, rows, required, non_empty, not_null, missing_in)


def check_rows(
    path: str,
    rows: list[Row],
    required: Sequence[str] = (),
    non_empty: Sequence[str] = (),
    not_null: Sequence[str] = (),
    missing_in: MissingIn | None = None,
    policy: ReadPolicy | None = None,
) -> list[Row]:
    """Apply the reading policy to parsed rows, the same for every file format.

    Every field of every row must be at most ``policy.max_field_chars`` characters (a list
    counts as its items joined by spaces) and hold no lone UTF-16 surrogate. A missing value
    (``is_missing``: an absent key, JSON null, a NaN number, one of ``MISSING_MARKERS``, or a
    blank string in a ``non_empty`` column) in a ``required``, ``non_empty`` or ``not_null``
    column, or found by ``missing_in``, is an error naming file, line and field; with
    ``policy.drop_missing`` its row is dropped instead and one notice on stderr gives the
    count and the first lines.
    """
    policy = policy or current_policy()
    kept: list[Row] = []
    dropped: list[int] = []
    for row in rows:
        _check_lengths(path, row, policy.max_field_chars)
        miss = _first_missing(path, row, required, non_empty, not_null, missing_in)
        if miss is None:
            kept.append(row)
            continue
        field, value, line = miss
        if not policy.drop_missing:
            raise DataError(path, line, missing_message(value), field=field)
        dropped.append(line)
    if dropped:
        _notice_dropped(path, dropped, len(rows))
        if not kept:
            raise DataError(
                path, None, f"no rows left: all {len(rows)} have a missing value (--drop-missing)"
            )
    return kept


def _check_lengths(path: str, row: Row, limit: int) -> None:
    for col, value in row.values.items():
        chars, surrogate = measure(value)
        if chars > limit:
            raise DataError(path, row.line, length_message(chars, limit), field=col)
        if surrogate:
            raise DataError(
                path,
                row.line,
                "holds a lone UTF-16 surrogate (a broken \\ud800-\\udfff escape); "
                "write the character itself",
                field=col,
            )


def _first_missing(
    path: str,
    row: Row,
    required: Sequence[str],
    non_empty: Sequence[str],
    not_null: Sequence[str],
    missing_in: MissingIn | None,
) -> tuple[str, Any, int] | None:
    v = row.values
    for col in dict.fromkeys([*required, *non_empty, *not_null]):
        value = v.get(col, ABSENT)
        if is_missing(value, empty=col in non_empty):
            return col, value, row.line
        if col in non_empty and (
            isinstance(value, bool) or not isinstance(value, (str, int, float))
        ):
            raise DataError(path, row.line, f"expected text, got {shown(value)}", field=col)
    found = missing_in(row) if missing_in is not None else None
    if found is not None:
        return found[0], found[1], found[2] if found[2] is not None else row.line
    return None


def _notice_dropped(path: str, lines: list[int], total: int) -> None:
    if os.environ.get("RANK", "0") != "0":
        return  # one notice per run, from the main process
    first = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
    print(
        f"tunelab: {path}: dropped {len(lines)} of {total} rows with a missing value "
        f"(--drop-missing); line{'s' if len(lines) > 1 else ''} {first}",
        file=sys.stderr,
        flush=True,
    )


def read_texts(path: str | None, text_column: str = "text") -> list[tuple[int, str]]:
    """Texts to predict on: a .csv/.tsv/.jsonl/.txt file, or stdin (one text per line) if ``path``
    is None or '-'. Returns (line, text) pairs."""
    if path in (None, "-"):
        text = _decode("<stdin>", sys.stdin.buffer.read())
        rows = [Row(i, {"text": t}) for i, t in enumerate(split_lines(text), 1) if t.strip()]
        if not rows:
            raise DataError("<stdin>", 1, "no input texts (one text per line expected)")
        return [(r.line, r.values["text"]) for r in check_rows("<stdin>", rows, ["text"])]
    if file_format(path) == "txt":
        text_column = "text"
    rows = read_rows(path, required=[text_column], non_empty=[text_column])
    return [(r.line, str(r.values[text_column])) for r in rows]
