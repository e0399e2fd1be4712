"""User-facing errors: one line, names the file/line/field, exit code 2, no traceback."""

from __future__ import annotations

import re
from os import PathLike

# what would break the one line (every separator str.splitlines knows) or could not be printed
# (a lone UTF-16 surrogate from a JSON escape): written as its escape instead
_UNSAFE = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` with line breaks and unprintable surrogates escaped (a file's contents quoted in
    a message must not break it over lines or crash printing it)."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class TunelabError(Exception):
    """An error caused by the user's input or environment, reported as one line."""

    exit_code = 2


class DataError(TunelabError):
    """Bad data: the message names the file, the line and the field."""

    def __init__(
        self, path: str | PathLike[str], line: int | None, message: str, field: str | None = None
    ):
        self.path, self.line, self.field = str(path), line, field
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"field '{field}': {message}" if field else message
        super().__init__(one_line(f"{where}: {what}"))


class ConfigError(TunelabError):
    """An unknown or invalid configuration key or value."""


class ModelNotFoundError(TunelabError):
    """A model name that is neither an alias, a local folder, nor reachable on the hub."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type name when it has none), at most
    ``limit`` characters: what a one-line error shows of a library's exception."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]
