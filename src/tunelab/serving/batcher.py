"""Dynamic micro-batching: concurrent requests for one model share a forward pass.

Requests go into a thread-safe queue. One worker thread per model takes the first, then
everything already queued, then waits up to ``max_wait`` seconds for more, until ``max_batch``
texts are gathered; one forward pass answers them all, and each request gets its own slice
back on the event loop. While a pass runs the next requests queue up, so under load batches
fill by themselves and a lone request waits at most ``max_wait``.

When a pass fails, the batch is re-run in halves until the failing requests are found: only
they get the error, the others their results.

The gathering happens in the worker thread, not on the event loop: the next pass starts the
moment the previous one ends, even while the event loop is still busy sending that pass's
responses. (With the gathering on the event loop the model sat idle a fifth of the time under
16 concurrent clients, waiting for the loop to come back to the batching task.)
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_STOP = object()


class MicroBatcher:
    """Batches ``predict(items) -> outputs`` calls; one forward pass at a time per model."""

    def __init__(
        self,
        predict: Callable[[list], list],
        max_batch: int,
        max_wait: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait
        self.on_batch = on_batch
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.pending = 0  # requests submitted and not answered yet (event-loop side)

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self._work, args=(asyncio.get_running_loop(),), name="tunelab-batch", daemon=True
        )
        self.thread.start()

    async def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        while self.pending:
            await asyncio.sleep(0.005)
        if self.thread is not None:
            self.queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self.thread.join)
            self.thread = None

    @property
    def depth(self) -> int:
        return self.pending

    async def submit(self, items: list) -> list:
        """The outputs for ``items``, in order, computed together with other requests'."""
        fut = asyncio.get_running_loop().create_future()
        self.pending += 1
        self.queue.put((items, fut))
        try:
            return await fut
        finally:
            self.pending -= 1

    # --- the worker thread -------------------------------------------------------------
    def _gather(self, carry) -> tuple[list, Any]:
        """One batch (and the request that would have overflowed it, which opens the next)."""
        first = carry if carry is not None else self.queue.get()
        if first is _STOP:
            return [], _STOP
        batch, n = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait
        while n < self.max_batch:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    nxt = self.queue.get(timeout=left)
                except queue.Empty:
                    break
            if nxt is _STOP or n + len(nxt[0]) > self.max_batch:
                return batch, nxt
            batch.append(nxt)
            n += len(nxt[0])
        return batch, None

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        carry = None
        while True:
            batch, carry = self._gather(carry)
            if not batch:
                return
            batch = [(items, fut) for items, fut in batch if not fut.cancelled()]
            flat: list[Any] = [x for items, _ in batch for x in items]
            if flat:
                if self.on_batch:
                    self.on_batch(len(flat))
                try:
                    loop.call_soon_threadsafe(_answer, batch, self.predict(flat), None)
                except Exception as e:
                    if len(batch) == 1:
                        loop.call_soon_threadsafe(_answer, batch, None, e)
                    else:  # one request's input broke the shared pass: find it
                        self._isolate(loop, batch)
            if carry is _STOP:
                return

    def _isolate(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        """Re-run a failed batch (two or more requests) in halves, recursively, so only the
        requests that fail on their own hear the error (one request can never fail another).
        One bad request among n costs about 2 log2(n) extra passes, each still batched."""
        mid = len(batch) // 2
        for half in (batch[:mid], batch[mid:]):
            try:
                outs = self.predict([x for items, _ in half for x in items])
            except Exception as e:
                if len(half) == 1:  # failed on its own: its error
                    loop.call_soon_threadsafe(_answer, half, None, e)
                else:
                    self._isolate(loop, half)
            else:
                loop.call_soon_threadsafe(_answer, half, outs, None)


def _answer(batch: list, outs: list | None, error: Exception | None) -> None:
    """On the event loop: each request's slice of the outputs (or the model's error)."""
    i = 0
    for items, fut in batch:
        if not fut.done():
            if error is not None:
                fut.set_exception(error)
            else:
                assert outs is not None  # outputs come whenever there is no error
                fut.set_result(outs[i : i + len(items)])
        i += len(items)
