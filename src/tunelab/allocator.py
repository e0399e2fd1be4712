"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

glibc's ``malloc`` serves every block over its mmap threshold (128 KiB, adapting up to 32 MiB)
with a fresh ``mmap`` and gives it back on ``free``; memory above the trim threshold at the
top of the heap goes back too. A training step frees and re-allocates the same large
activations and gradients on every step, so each one is page-faulted in again and zeroed by
the kernel: on the 2-core AMX Xeon, zero-filling MiniLM's 47 MB embedding gradient took 32 ms
(of a ~190 ms bf16 step) and a 3.5 M-element GELU backward 13 ms, against 7 and 3 ms once
the pages are reused. (The Intel Extension for PyTorch recommends preloading jemalloc or
tcmalloc for the same reason; this needs no other library.)

:func:`retain_freed_memory` sets ``M_MMAP_MAX`` to 0 (every block comes from the heap) and
``M_TRIM_THRESHOLD`` to 1 GiB (freed heap memory stays for the next step). The resident
memory then stays near the process's peak instead of shrinking between steps; the peak itself
is what it was. Training calls it on a CPU; ``TUNELAB_MALLOC=system`` leaves glibc's defaults.

Evaluation runs under :func:`released` (large blocks mapped and unmapped again): generation
allocates a KV cache that grows by one position per token, and on a heap that is never given
back each slightly larger block lands above the freed smaller ones. Scoring a planner's
validation split after bf16 training grew the process to 24 GB that way, and it was killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import platform
from collections.abc import Iterator

ENV = "TUNELAB_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
TRIM_THRESHOLD = 1 << 30
_DEFAULT_TRIM, _DEFAULT_MMAP_MAX = 128 * 1024, 65536  # glibc's documented defaults
_applied: bool | None = None  # None: not asked yet
_released_depth = 0  # open released() contexts


def retain_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse (once per process); returns whether it
    applied (False off glibc, or with ``TUNELAB_MALLOC=system``)."""
    global _applied
    if _applied is None:
        _applied = _mallopt()
    return _applied


def applies() -> bool:
    """Whether training in this environment keeps freed memory (glibc, not turned off)."""
    return (
        os.environ.get(ENV, "").lower() != "system"
        and platform.system() == "Linux"
        and platform.libc_ver()[0] == "glibc"
    )


@contextlib.contextmanager
def released() -> Iterator[None]:
    """glibc's defaults for the duration (large blocks mapped, freed memory returned), then
    back to keeping freed memory if training had asked for it. Nested uses (an evaluation
    that computes logits) restore it only when the outermost one ends."""
    global _released_depth
    if not _applied:
        yield
        return
    if _released_depth == 0:
        _set(_DEFAULT_MMAP_MAX, _DEFAULT_TRIM)
    _released_depth += 1
    try:
        yield
    finally:
        _released_depth -= 1
        if _released_depth == 0:
            _set(0, TRIM_THRESHOLD)


def _set(mmap_max: int, trim: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mmap_ok = libc.mallopt(_M_MMAP_MAX, mmap_max) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, trim) == 1 and mmap_ok
    except (OSError, AttributeError):
        return False


def _mallopt() -> bool:
    return applies() and _set(0, TRIM_THRESHOLD)


def describe() -> str:
    """How training allocates here, for the machine record (of a run or a benchmark)."""
    if _applied is False:  # asked, and glibc refused
        return "system default"
    return "glibc, freed memory kept in training" if applies() else "system default"
