"""The serving micro-batcher on its own: what it gathers, how it splits, how it fails."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tunelab.serving.batcher import MicroBatcher


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_passes_and_get_their_own_slices():
    seen: list[list] = []
    gate = threading.Event()

    def predict(items):
        gate.wait(5)  # the first pass holds the worker while the rest queue up
        seen.append(list(items))
        return [x * 10 for x in items]

    async def main():
        b = MicroBatcher(predict, max_batch=32, max_wait=0.002)
        b.start()
        first = asyncio.ensure_future(b.submit([0]))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(b.submit([i, i + 100])) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        outs = await asyncio.gather(first, *rest)
        await b.close()
        return outs

    outs = run(main())
    assert outs[0] == [0]
    assert outs[1:] == [[i * 10, (i + 100) * 10] for i in range(1, 6)]
    assert seen[0] == [0] and len(seen) == 2  # the five queued requests went in one pass
    assert sorted(seen[1]) == sorted(x for i in range(1, 6) for x in (i, i + 100))


def test_a_request_that_would_overflow_opens_the_next_batch():
    sizes: list[int] = []
    gate = threading.Event()

    def predict(items):
        gate.wait(5)
        sizes.append(len(items))
        return list(items)

    async def main():
        b = MicroBatcher(predict, max_batch=4, max_wait=0.002, on_batch=lambda n: None)
        b.start()
        blocker = asyncio.ensure_future(b.submit(["x"]))
        await asyncio.sleep(0.05)
        futs = [
            asyncio.ensure_future(b.submit([f"{i}a", f"{i}b", f"{i}c"][:n]))
            for i, n in enumerate((3, 3, 1))
        ]
        await asyncio.sleep(0.05)
        gate.set()
        outs = await asyncio.gather(blocker, *futs)
        await b.close()
        return outs

    outs = run(main())
    assert outs == [["x"], ["0a", "0b", "0c"], ["1a", "1b", "1c"], ["2a"]]
    assert max(sizes) <= 4 and sum(sizes) == 8  # nothing split across batches or lost


@pytest.mark.parametrize("bad_at", [[0], [5], [2, 13], [0, 1, 2, 3]])
def test_a_failing_pass_fails_only_the_requests_that_fail_alone(bad_at):
    passes: list[list[str]] = []

    def predict(items):
        passes.append(list(items))
        if any(x.startswith("boom") for x in items):
            raise RuntimeError("model failed")
        return [x.upper() for x in items]

    async def main():
        b = MicroBatcher(predict, max_batch=64, max_wait=0.05)
        b.start()
        reqs = [[f"boom{i}"] if i in bad_at else [f"ok{i}", f"ok{i}b"] for i in range(16)]
        got = await asyncio.gather(*(b.submit(r) for r in reqs), return_exceptions=True)
        later = await b.submit(["later"])
        await b.close()
        return reqs, got, later

    reqs, got, later = run(main())
    for i, (r, g) in enumerate(zip(reqs, got, strict=True)):
        if i in bad_at:
            assert isinstance(g, RuntimeError)
        else:
            assert g == [x.upper() for x in r]
    assert later == ["LATER"]
    if len(bad_at) == 1:  # halving finds one bad request in about 2 log2(16) passes
        assert len(passes) <= 1 + 2 * 4 + 1


def test_close_answers_what_is_queued_then_stops_the_worker():
    def predict(items):
        threading.Event().wait(0.01)
        return [len(x) for x in items]

    async def main():
        b = MicroBatcher(predict, max_batch=2, max_wait=0.001)
        b.start()
        futs = [asyncio.ensure_future(b.submit(["ab"])) for _ in range(7)]
        await asyncio.sleep(0)
        await b.close()
        assert b.thread is None
        return [f.result() for f in futs]

    assert run(main()) == [[2]] * 7


@pytest.mark.parametrize("max_wait", [0.0, 0.05])
def test_a_lone_request_waits_at_most_max_wait(max_wait):
    def predict(items):
        return items

    async def main():
        b = MicroBatcher(predict, max_batch=32, max_wait=max_wait)
        b.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await b.submit(["only"])
        took = loop.time() - t0
        await b.close()
        return out, took

    out, took = run(main())
    assert out == ["only"]
    assert took >= max_wait * 0.9 and took < max_wait + 1.0


def test_the_rate_limiter_forgets_addresses_that_refilled():
    from tunelab.web.guard import RateLimiter

    limiter = RateLimiter(60)
    limiter.MAX_KEYS = 5
    for i in range(8):
        limiter.buckets[f"old{i}"] = (0.0, -1e9)  # long ago: refilled since
    limiter.buckets["waiting"] = (0.0, __import__("time").monotonic())
    assert limiter.check("new") == 0.0
    assert set(limiter.buckets) == {"waiting", "new"}
    assert limiter.check("waiting") > 0  # still limited
