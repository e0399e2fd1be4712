"""Prometheus metrics. With ``--workers N`` every worker writes to a shared folder
(``PROMETHEUS_MULTIPROC_DIR``, set by ``tunelab serve`` before the workers start) and any
worker answering ``/metrics`` reports the sum over all of them."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "tunelab_requests_total",
    "HTTP requests by model, endpoint and status",
    ["model", "endpoint", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "tunelab_request_latency_seconds",
    "Request latency by model and endpoint",
    ["model", "endpoint"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH = Histogram(
    "tunelab_batch_size",
    "Texts per forward pass",
    ["model"],
    registry=REGISTRY,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
QUEUE = Gauge(
    "tunelab_queue_depth",
    "Requests waiting for a forward pass",
    ["model"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
TEXTS = Counter("tunelab_texts_total", "Texts predicted", ["model"], registry=REGISTRY)


def render() -> tuple[bytes, str]:
    """The exposition text (summed over worker processes in multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return generate_latest(reg), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
