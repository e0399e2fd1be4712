"""Per-key rate limiting, and the masking of personal data in request logs
(:func:`tunelab.privacy.mask`, shared with everything that stores text)."""

from __future__ import annotations

import threading
import time

from tunelab.privacy import mask as mask_personal_data

__all__ = ["RateLimiter", "mask_personal_data"]


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to that many; 0 is
    no limit."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def peek(self, key: str) -> float:
        """Like :meth:`check` without spending a token: 0 if a request may go ahead."""
        if self.rate <= 0:
            return 0.0
        with self.lock:
            tokens, last = self.buckets.get(key, (self.capacity, time.monotonic()))
        tokens = min(self.capacity, tokens + (time.monotonic() - last) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    MAX_KEYS = 10_000  # past this many, buckets that refilled are forgotten

    def check(self, key: str) -> float:
        """0 if the request may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self.lock:
            if len(self.buckets) > self.MAX_KEYS:  # many addresses: keep only the ones waiting
                full = self.capacity / self.rate
                self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < full}
            tokens, last = self.buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self.buckets[key] = (tokens - 1.0, now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
