"""The monitor's loop: posts from a source -> the models (in batches) -> one committed
transaction per batch (the acknowledgement) -> windows -> rules -> alerts (stored, delivered).

Crash safety: a batch's posts and analyses commit together, so a killed monitor leaves whole
batches; a restarted replay skips the posts already stored (their ids) yet still counts them in
its windows, so the windows, the alerts and the stored counts equal an uninterrupted run's.
"""

from __future__ import annotations

import math
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import TunelabError
from tunelab.monitor.config import MonitorConfig
from tunelab.monitor.delivery import POSTS, RULE_VALUE, WINDOW, Delivery
from tunelab.monitor.rules import describe, group_of
from tunelab.monitor.windows import NEGATIVE, Analysed, RuleRunner, Windows
from tunelab.store.alerts import record_alert
from tunelab.store.db import open_store
from tunelab.store.posts import Post, store_posts

_END = object()


@dataclass
class Summary:
    posts: int = 0
    stored: int = 0
    duplicates: int = 0
    late: int = 0
    windows: int = 0
    # the latest state changes (the database keeps them all): bounded for a long-lived monitor
    alerts: deque = field(default_factory=lambda: deque(maxlen=1000))
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "posts": self.posts,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "late": self.late,
            "windows": self.windows,
            "alerts": list(self.alerts),
            "seconds": round(self.seconds, 2),
            "posts_per_s": round(self.posts / self.seconds, 1) if self.seconds else None,
        }


class KeywordEntities:
    """Entities from the rule file's keyword lists: a case-insensitive match, on word edges for
    Latin keywords, anywhere for Chinese ones (no spaces between words)."""

    def __init__(self, entities: dict[str, list[str]]) -> None:
        self.patterns = []
        for name, words in entities.items():
            parts = [
                rf"(?<![A-Za-z0-9]){re.escape(w)}(?![A-Za-z0-9])" if w.isascii() else re.escape(w)
                for w in words
            ]
            self.patterns.append((name, re.compile("|".join(parts), re.IGNORECASE)))

    def __call__(self, text: str) -> tuple[str, ...]:
        return tuple(name for name, p in self.patterns if p.search(text))


def sentiment_row(pred: dict, entities: tuple[str, ...]) -> dict:
    """The sentiment analysis row of one post (the live monitor and the backfill store the
    same)."""
    details = {"probabilities": pred.get("probabilities"), "entities": list(entities)}
    return {
        "model": "sentiment",
        "label": pred["label"],
        "score": pred["score"],
        "details": details,
    }


def _functions(names: tuple[str, ...]) -> list[tuple[str, Callable[[list[str]], list]]]:
    """The configured task functions, each checked to have a model registered now (a missing
    one is the registry's own one-line error, before any post is read)."""
    from tunelab.functions.catalog import get_function
    from tunelab.functions.registry import model_for

    out = []
    for name in names:
        fn = get_function(name)
        assert fn is not None  # load_config checked the name
        model_for(name)
        out.append((name, fn.func))
    return out


def _function_row(name: str, result) -> tuple[dict, tuple[str, ...]]:
    """A task function's result for one post as an analysis row, and the entity names in it
    (extract_entities): a label and its score, a number, or entities."""
    from tunelab.functions import as_json

    row: dict[str, Any] = {"model": name[:100], "label": None, "score": None, "details": None}
    names: tuple[str, ...] = ()
    if isinstance(result, (int, float)):
        row["score"] = float(result)
    elif isinstance(result, list):  # entities
        row["details"] = {"entities": as_json(result)}
        names = tuple(dict.fromkeys(getattr(e, "text", str(e)) for e in result))
    else:
        row["label"], row["score"] = getattr(result, "label", None), getattr(result, "score", None)
        row["details"] = as_json(result)
    return row, names


class Monitor:
    """One monitor: its models, database, windows, rules and delivery. ``process`` may be
    called from several threads (the HTTP ingest route): batches go through one at a time."""

    def __init__(self, cfg: MonitorConfig, model=None, ner=None, topics=None) -> None:
        import tunelab

        self.cfg = cfg
        self.engine = open_store(cfg.database)
        self.model = model or tunelab.load(cfg.sentiment)
        if NEGATIVE not in getattr(self.model, "labels", []):
            raise TunelabError(
                f"{cfg.sentiment}: the sentiment run's labels "
                f"({', '.join(self.model.labels)}) have no '{NEGATIVE}'"
            )
        self.ner = ner or (tunelab.load(cfg.entities_model) if cfg.entities_model else None)
        self.topics = topics or (tunelab.load(cfg.topic_model) if cfg.topic_model else None)
        self.functions = _functions(cfg.functions)
        self.lock = threading.Lock()
        self.last_post_time: float | None = None
        self.keywords = KeywordEntities(cfg.rules.entities)
        self.windows = Windows(cfg.rules.window_s)
        self.runner = RuleRunner(cfg.rules)
        self.rules = {r.name: r for r in cfg.rules.rules}
        # the groups published as window gauges: what the Prometheus rules read
        self.gauge_groups = {"all"} | {group_of(r) for r in cfg.rules.rules if r.kind != "mention"}
        self.delivery = Delivery(cfg.webhook, cfg.webhook_timeout_s, cfg.webhook_retries)
        self.summary = Summary()

    # -- one batch -----------------------------------------------------------------------
    def analyse(self, batch: list[Post]) -> tuple[list[Analysed], list[list[dict]]]:
        texts = [p.text for p in batch]  # the models read the text; the database gets it masked
        size = min(64, len(texts))
        preds = self.model.predict(texts, batch_size=size)
        topics = self.topics.predict(texts, batch_size=size) if self.topics else [None] * len(texts)
        ents: list[tuple[str, ...]] = [self.keywords(t) for t in texts]
        ner_rows: list[dict | None] = [None] * len(batch)
        if self.ner is not None:
            for i, out in enumerate(self.ner.predict(texts, batch_size=min(64, len(texts)))):
                names = tuple(dict.fromkeys(e["text"] for e in out["entities"]))
                ents[i] = tuple(dict.fromkeys(ents[i] + names))
                ner_rows[i] = {
                    "model": "entities",
                    "label": None,
                    "score": None,
                    "details": {"entities": out["entities"]},
                }
        extra: list[list[dict]] = [[] for _ in batch]
        for name, fn in self.functions:
            for i, result in enumerate(fn(texts)):
                row, names = _function_row(name, result)
                extra[i].append(row)
                ents[i] = tuple(dict.fromkeys(ents[i] + names))
        analysed, rows = [], []
        for p, pred, e, ner_row, topic, more in zip(
            batch, preds, ents, ner_rows, topics, extra, strict=True
        ):
            analysed.append(
                Analysed(
                    p.post_id,
                    p.time.timestamp(),
                    p.source,
                    pred["label"],
                    pred["score"],
                    e,
                    topic["label"] if topic else None,
                )
            )
            r = [sentiment_row(pred, e)]
            if topic:
                r.append(
                    {
                        "model": "topic",
                        "label": topic["label"],
                        "score": topic["score"],
                        "details": {"probabilities": topic.get("probabilities")},
                    }
                )
            rows.append(r + ([ner_row] if ner_row else []) + more)
        return analysed, rows

    def process(self, batch: list[Post]) -> dict[tuple[str, str], int]:
        """Analyse, store (committed: acknowledged) and count one batch; returns the posts it
        stored, as (source, id) -> row number (a post stored before is left out)."""
        with self.lock:
            return self._process(batch)

    def _process(self, batch: list[Post]) -> dict[tuple[str, str], int]:
        analysed, rows = self.analyse(batch)
        mentions = [a.entities for a in analysed]
        stored = store_posts(self.engine, batch, rows, mentions)  # committed: acknowledged
        self.summary.posts += len(batch)
        self.summary.stored += len(stored)
        self.summary.duplicates += len(batch) - len(stored)
        POSTS.labels("stored").inc(len(stored))
        POSTS.labels("duplicate").inc(len(batch) - len(stored))
        for a in analysed:
            self.last_post_time = max(self.last_post_time or a.time, a.time)
            for w in self.windows.add(a):
                self._on_window(w)
        return stored

    def tick(self, now: float | None = None) -> None:
        """A live source's clock: when the newest post is recent (a live stream, not a replay
        of old posts), close the windows that ended more than the allowed lateness ago."""
        now = time.time() if now is None else now
        with self.lock:
            last = self.last_post_time
            if last is None or now - last > 2 * self.windows.lateness + self.windows.size:
                return
            for w in self.windows.advance(now - self.windows.lateness):
                self._on_window(w)

    def _on_window(self, w) -> None:
        self.summary.windows += 1
        for a in self.runner.on_window(w):
            rule = self.rules[a.rule]
            details = {
                "window_start": w.start,
                "window_end": w.end,
                "kind": rule.kind,
                "condition": describe(rule),
                "description": rule.description,
            }
            record_alert(self.engine, a, details)
            self.delivery.deliver(a, details)
            self.summary.alerts.append(
                {"rule": a.rule, "state": a.state, "at": w.end, "value": a.value}
            )
        for name, value in self.runner.values.items():
            RULE_VALUE.labels(name).set(math.nan if value is None else value)
        for g in self.gauge_groups:
            stats = w.groups.get(g)
            for metric, gauge in WINDOW.items():
                v = (
                    stats.value(metric)
                    if stats is not None
                    else (0.0 if metric == "volume" else None)
                )
                gauge.labels(g).set(math.nan if v is None else v)

    # -- a whole source --------------------------------------------------------------------
    def run(self, posts: Iterable[Post], max_wait_s: float = 1.0) -> Summary:
        """Take every post of ``posts``: batches of ``batch_size``, or fewer after
        ``max_wait_s`` without a full batch (a live source). The source is read in a thread,
        so a quiet live source does not hold back a partial batch; its errors surface here."""
        q: queue.Queue = queue.Queue(maxsize=self.cfg.batch_size * 4)
        failure: list[BaseException] = []

        def read() -> None:
            try:
                for p in posts:
                    q.put(p)
            except BaseException as e:  # a malformed post: reported by the main loop
                failure.append(e)
            finally:
                q.put(_END)

        reader = threading.Thread(target=read, daemon=True)
        t0 = time.perf_counter()
        reader.start()
        batch: list[Post] = []
        done = False
        try:
            while not done:
                deadline = time.monotonic() + max_wait_s
                while len(batch) < self.cfg.batch_size:
                    try:
                        item = q.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is _END:
                        done = True
                        break
                    batch.append(item)
                if batch:
                    self.process(batch)
                    batch = []
                self.tick()  # a live source gone quiet still closes its windows
            if failure:
                raise failure[0]
            for w in self.windows.flush():
                self._on_window(w)
        finally:
            self.summary.late = self.windows.late
            self.summary.seconds = time.perf_counter() - t0
            self.delivery.close()
        return self.summary
