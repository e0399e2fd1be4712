"""Writing a file so that a reader sees the old one or the new one, never half of it: write a
temporary file in the same folder, then rename it over the target. Every file tunelab writes
in place (run descriptions, registries, key files, predictions, data sets) goes through here.
The file is flushed to disk before the rename, so a power cut cannot leave an empty file.

Libraries that write in Rust or C++ (safetensors, tokenizers, ``torch.save``) report a full
disk or a read-only folder in their own exception types; :func:`as_os_error` turns those back
into the ``OSError`` they stand for, so callers can report them as one line."""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tunelab.errors import TunelabError


@contextmanager
def atomic_writer(
    path: str | os.PathLike,
    mode: int = 0o644,
    newline: str | None = None,
    what: str = "file",
    binary: bool = False,
) -> Iterator[IO]:
    """A handle (text, or bytes with ``binary``) on a temporary file that replaces ``path``
    when the block ends; on an error the temporary file is removed and ``path`` is untouched. A
    failed write (disk full, permissions) is a one-line TunelabError naming the file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        f = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes, what: str = "file") -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, what=what, binary=True) as f:
        f.write(data)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under ``folder``, and the folders themselves, to disk (POSIX; on
    Windows a read-only handle cannot be flushed and the rename is not atomic anyway)."""
    if os.name == "nt":
        return
    for root, _, names in os.walk(os.fspath(folder)):
        for name in names:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


# "No space left on device (os error 28)" (Rust: safetensors, tokenizers) and "open file failed
# with strerror: Permission denied" (torch.save's C++ writer)
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
_STRERROR = re.compile(r"strerror: ([^\n.]+)")
_TORCH_WRITER = ("PytorchStreamWriter", "inline_container")


def as_os_error(e: BaseException, folder: str | os.PathLike | None = None) -> OSError | None:
    """The OSError a failed write stands for, or None when ``e`` is not a failed write.
    ``torch.save`` on a full disk says only "unexpected pos"; it is a full disk when
    ``folder`` has (almost) no space left, else a plain write failure."""
    if isinstance(e, OSError):
        return e
    if not isinstance(e, Exception):  # Ctrl-C, SystemExit
        return None
    text = str(e)
    if m := _OS_ERROR.search(text):
        return OSError(int(m.group(1)), os.strerror(int(m.group(1))))
    if not any(w in text for w in _TORCH_WRITER):
        return None
    if m := _STRERROR.search(text):
        named = {os.strerror(n): n for n in errno.errorcode}
        return OSError(named.get(m.group(1).strip(), errno.EIO), m.group(1).strip())
    try:
        full = folder is not None and shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(errno.EIO, f"write failed: {text.splitlines()[0] if text else type(e).__name__}")
