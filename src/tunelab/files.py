"""Writing a file so that a reader sees the old one or the new one, never half of it: write a
temporary file in the same folder, then rename it over the target. Every file tunelab writes
in place (run descriptions, registries, key files, predictions, data sets) goes through here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tunelab.errors import TunelabError


@contextmanager
def atomic_writer(
    path: str | os.PathLike, mode: int = 0o644, newline: str | None = None, what: str = "file"
) -> Iterator[IO[str]]:
    """A text handle on a temporary file that replaces ``path`` when the block ends; on an
    error the temporary file is removed and ``path`` is untouched. A failed write (disk full,
    permissions) is a one-line TunelabError naming the file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            yield f
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TunelabError(f"{target}: cannot write the {what} ({e.strerror or e})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(
    path: str | os.PathLike, text: str, mode: int = 0o644, what: str = "file"
) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, mode, what=what) as f:
        f.write(text)
