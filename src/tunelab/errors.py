"""User-facing errors: one line, names the file/line/field, exit code 2, no traceback."""

from __future__ import annotations

from os import PathLike


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
        super().__init__(f"{where}: {what}")


class ConfigError(TunelabError):
    """An unknown or invalid configuration key or value."""


class ModelNotFoundError(TunelabError):
    """A model name that is neither an alias, a local folder, nor reachable on the hub."""
