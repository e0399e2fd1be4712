"""Read CSV, TSV and JSONL files into rows, rejecting bad input with file:line: field messages.

Every row keeps the 1-based line number it started on, so later checks (an unknown label at
evaluation time, an empty text) can point the user at the exact place in their file.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "txt"}


@dataclass(frozen=True)
class Row:
    line: int
    values: dict[str, Any]


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
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, i, f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(path, i, f"expected a JSON object per line, got {type(obj).__name__}")
        rows.append(Row(i, obj))
    return rows


def read_rows(
    path: str | Path,
    required: list[str] | tuple[str, ...] = (),
    non_empty: list[str] | tuple[str, ...] = (),
) -> list[Row]:
    """Read a .csv/.tsv/.jsonl file and check it.

    Args:
        path: the file.
        required: columns (JSON keys) every row must have.
        non_empty: columns whose value must be a non-blank string or number.
    Returns:
        rows in file order, each with its 1-based starting line number.
    Raises:
        DataError naming file, line and field.
    """
    path = str(path)
    fmt = file_format(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, None, "is a folder, expected a file") from None
    except PermissionError:
        raise DataError(path, None, "permission denied") from None
    text = _decode(path, raw)
    if not text.strip():
        raise DataError(path, 1, "file is empty")
    if fmt == "txt":
        rows = [Row(i, {"text": t}) for i, t in enumerate(text.splitlines(), 1) if t.strip()]
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
    for row in rows:
        for col in required:
            if col not in row.values:
                raise DataError(path, row.line, "missing", field=col)
        for col in non_empty:
            v = row.values.get(col)
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise DataError(path, row.line, f"expected text, got {json.dumps(v)}", field=col)
            if isinstance(v, str) and not v.strip():
                raise DataError(path, row.line, "is empty", field=col)
    return rows


def read_texts(path: str | None, text_column: str = "text") -> list[tuple[int, str]]:
    """Texts to predict on: a .csv/.tsv/.jsonl/.txt file, or stdin (one text per line) if ``path``
    is None or '-'. Returns (line, text) pairs."""
    if path in (None, "-"):
        data = sys.stdin.buffer.read()
        text = _decode("<stdin>", data)
        out = [(i, t) for i, t in enumerate(text.splitlines(), 1) if t.strip()]
        if not out:
            raise DataError("<stdin>", 1, "no input texts (one text per line expected)")
        return out
    if file_format(path) == "txt":
        return [(r.line, str(r.values["text"])) for r in read_rows(path)]
    rows = read_rows(path, required=[text_column], non_empty=[text_column])
    return [(r.line, str(r.values[text_column])) for r in rows]
