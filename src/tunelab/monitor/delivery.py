"""Where alerts go: a log line, Prometheus metrics, and an optional webhook (a JSON POST with a
timeout and retries, sent from a background thread, so a slow or failing webhook never holds up
ingestion; what could not be delivered is logged, and the alert history in the database has it
either way)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.request
from datetime import datetime, timezone

from prometheus_client import Counter, Gauge

from tunelab.web.metrics import REGISTRY

log = logging.getLogger("tunelab.monitor")

POSTS = Counter(
    "tunelab_monitor_posts_total", "Posts taken in, by outcome", ["outcome"], registry=REGISTRY
)
ALERTS = Counter(
    "tunelab_monitor_alerts_total", "Alert state changes", ["rule", "state"], registry=REGISTRY
)
WINDOW = {
    metric: Gauge(
        f"tunelab_monitor_window_{name}",
        f"The last closed window's {what}, per group (all, source:, topic:, entity:)",
        ["group"],
        registry=REGISTRY,
    )
    for metric, name, what in (
        ("volume", "posts", "posts"),
        ("negative_share", "negative_share", "share of negative posts"),
        ("mean_score", "mean_score", "mean score of the sentiment label"),
    )
}
RULE_VALUE = Gauge(
    "tunelab_monitor_rule_value",
    "Each rule's value in the last closed window (NaN: no posts to judge)",
    ["rule"],
    registry=REGISTRY,
)
FIRING = Gauge(
    "tunelab_monitor_alert_firing", "1 while the rule's alert fires", ["rule"], registry=REGISTRY
)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat()


def alert_json(a, details: dict | None = None) -> dict:
    return {
        "rule": a.rule,
        "severity": a.severity,
        "state": a.state,
        "started_at": _iso(a.started_at),
        "fired_at": _iso(a.fired_at),
        "resolved_at": _iso(a.resolved_at),
        "value": a.value,
        "details": details or {},
    }


class Delivery:
    """Log, count and (with a webhook URL) POST every alert state change."""

    def __init__(self, webhook: str | None, timeout_s: float = 5.0, retries: int = 3) -> None:
        self.webhook, self.timeout, self.retries = webhook, timeout_s, retries
        self.sent = self.failed = 0
        self._queue: queue.Queue = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        if webhook:
            self._thread = threading.Thread(target=self._send_loop, daemon=True)
            self._thread.start()

    def deliver(self, a, details: dict | None = None) -> None:
        body = alert_json(a, details)
        log.warning(
            "alert %s %s (%s): value %s at %s",
            a.rule,
            a.state,
            a.severity,
            a.value,
            body["resolved_at"] or body["fired_at"] or body["started_at"],
        )
        ALERTS.labels(a.rule, a.state).inc()
        FIRING.labels(a.rule).set(1 if a.state == "firing" else 0)
        if self.webhook:
            try:
                self._queue.put_nowait(body)
            except queue.Full:  # the webhook is far behind: the history still has it
                self.failed += 1
                log.error("webhook queue full: alert %s %s not sent", a.rule, a.state)

    def _send_loop(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            self._send(body)
            self._queue.task_done()

    def _send(self, body: dict) -> None:
        assert self.webhook is not None
        data = json.dumps(body, ensure_ascii=False).encode()
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(
                self.webhook, data=data, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    if 200 <= r.status < 300:
                        self.sent += 1
                        return
            except OSError as e:  # refused, timed out, 4xx/5xx (HTTPError is an OSError)
                why = str(getattr(e, "reason", e))
                if attempt == self.retries:
                    self.failed += 1
                    log.error(
                        "webhook %s: alert %s not delivered (%s)", self.webhook, body["rule"], why
                    )
                    return
            time.sleep(min(0.5 * 2**attempt, 10.0))

    def close(self, wait_s: float = 10.0) -> None:
        """Let queued webhook calls finish (at most ``wait_s``)."""
        if self._thread is None:
            return
        end = time.monotonic() + wait_s
        while self._queue.unfinished_tasks and time.monotonic() < end:
            time.sleep(0.05)
        self._queue.put(None)
        self._thread.join(timeout=max(0.0, end - time.monotonic()))
