"""Dynamic micro-batching: concurrent requests for one model share a forward pass.

Requests wait in a queue. The batching task takes the first one, then everything already
queued, then waits up to ``max_wait`` seconds for more, until ``max_batch`` texts are
gathered; one forward pass answers them all (in a worker thread, so the event loop keeps
accepting requests meanwhile), and each request gets its own slice back. While a pass runs the
next requests queue up, so under load batches fill by themselves and a lone request waits at
most ``max_wait``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


class MicroBatcher:
    """Batches ``predict(items) -> outputs`` calls; one forward pass at a time per model."""

    def __init__(self, predict: Callable[[list], list], max_batch: int, max_wait: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait
        self.on_batch = on_batch
        self.queue: asyncio.Queue[tuple[list, asyncio.Future]] = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelab-batch")
        self.task: asyncio.Task | None = None
        self.carry: tuple[list, asyncio.Future] | None = None  # opens the next batch

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Answer what is queued, then stop."""
        while not self.queue.empty() or self.carry is not None:
            await asyncio.sleep(0.005)
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return self.queue.qsize() + (self.carry is not None)

    async def submit(self, items: list) -> list:
        """The outputs for ``items``, in order, computed together with other requests'."""
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((items, fut))
        return await fut

    async def _gather(self) -> list[tuple[list, asyncio.Future]]:
        if self.carry is not None:
            batch, self.carry = [self.carry], None
        else:
            batch = [await self.queue.get()]
        n = len(batch[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while n < self.max_batch:
            if self.queue.empty():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
            else:
                nxt = self.queue.get_nowait()
            if n + len(nxt[0]) > self.max_batch:  # would overflow: it opens the next batch
                self.carry = nxt
                break
            batch.append(nxt)
            n += len(nxt[0])
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            batch = [(items, fut) for items, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            flat: list[Any] = [x for items, _ in batch for x in items]
            if self.on_batch:
                self.on_batch(len(flat))
            try:
                outs = await loop.run_in_executor(self.executor, self.predict, flat)
            except Exception as e:  # the model failed: every request in the batch hears it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            i = 0
            for items, fut in batch:
                if not fut.done():
                    fut.set_result(outs[i:i + len(items)])
                i += len(items)
