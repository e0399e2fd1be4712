"""Swap an attribute of a library (a function, a method) for tunelab's faster version while a
training step runs, and put the original back afterwards, also when the step fails.

Re-entrant and safe across threads: nested or concurrent blocks keep the swap until the last
one leaves. Used for the CPU dropout (:mod:`tunelab.training.fast_dropout`) and the fused LoRA
layer (:mod:`tunelab.training.fused_lora`), so inference, export and merging always run the
library's own code.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class Swap:
    """``with swap():`` makes ``owner.name`` be ``replacement`` inside the block."""

    def __init__(self, owner: Any, name: str, replacement: Any) -> None:
        self.owner, self.name, self.replacement = owner, name, replacement
        self.original = getattr(owner, name)
        self._lock = threading.Lock()
        self._depth = 0

    @contextlib.contextmanager
    def __call__(self, enabled: bool = True) -> Iterator[None]:
        if not enabled:
            yield
            return
        with self._lock:
            self._depth += 1
            setattr(self.owner, self.name, self.replacement)
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    setattr(self.owner, self.name, self.original)
