"""Tumbling windows over analysed posts, in the posts' own time, and the rules evaluated on each
window as it closes.

A window closes once a post arrives later than its end plus the allowed lateness (one window by
default), so posts a little out of order still count where they belong; a post later than that
is counted as late and left out. Windows with no posts are closed too: an alert resolves and a
baseline grows through a quiet hour.

For each closed window and each group (``all``, ``source:NAME``, ``topic:NAME``,
``entity:NAME``): volume, the
negative share (posts whose label is ``negative``) and the mean score of the label the model
gave; the posts themselves are kept for ``mention`` rules.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field

from tunelab.monitor.rules import (
    Alert,
    Evaluator,
    RuleSet,
    group_of,
    spike_holds,
    threshold_holds,
)

NEGATIVE = "negative"


@dataclass
class Analysed:
    """A post after the models: its time (epoch seconds), source, label and that label's
    score, the entities it mentions and its topic (with a topic model)."""

    post_id: str
    time: float
    source: str
    label: str | None
    score: float | None
    entities: tuple[str, ...] = ()
    topic: str | None = None


@dataclass
class Stats:
    volume: int = 0
    negative: int = 0
    score_sum: float = 0.0
    scored: int = 0

    def add(self, p: Analysed) -> None:
        self.volume += 1
        self.negative += p.label == NEGATIVE
        if p.score is not None:
            self.score_sum += p.score
            self.scored += 1

    def value(self, metric: str) -> float | None:
        if metric == "volume":
            return float(self.volume)
        if metric == "negative_share":
            return self.negative / self.volume if self.volume else None
        return self.score_sum / self.scored if self.scored else None


@dataclass
class Window:
    start: float
    end: float
    groups: dict[str, Stats] = field(default_factory=lambda: defaultdict(Stats))
    posts: list[Analysed] = field(default_factory=list)


def group_keys(p: Analysed) -> list[str]:
    topic = [f"topic:{p.topic}"] if p.topic else []
    return ["all", f"source:{p.source}", *topic, *(f"entity:{e}" for e in p.entities)]


class Windows:
    """Posts in, closed windows out."""

    def __init__(self, window_s: float, lateness_s: float | None = None) -> None:
        self.size = window_s
        self.lateness = window_s if lateness_s is None else lateness_s
        self.open: dict[float, Window] = {}
        self.next_start: float | None = None  # the oldest window not closed yet
        self.late = 0

    def _start(self, t: float) -> float:
        return math.floor(t / self.size) * self.size

    def add(self, p: Analysed) -> list[Window]:
        start = self._start(p.time)
        if self.next_start is None:
            self.next_start = start
        if start < self.next_start:
            self.late += 1  # its window has closed
            return []
        w = self.open.get(start)
        if w is None:
            w = self.open[start] = Window(start, start + self.size)
        for k in group_keys(p):
            w.groups[k].add(p)
        w.posts.append(p)
        return self._close_until(p.time - self.lateness)

    def _close_until(self, watermark: float) -> list[Window]:
        closed = []
        assert self.next_start is not None
        while self.next_start + self.size <= watermark:
            s = self.next_start
            w = self.open.pop(s) if s in self.open else Window(s, s + self.size)
            closed.append(w)
            self.next_start = s + self.size
        return closed

    def advance(self, watermark: float) -> list[Window]:
        """Close the windows that end before ``watermark`` (a live source's clock: a quiet
        stream still closes its windows, so an alert resolves during the silence)."""
        return [] if self.next_start is None else self._close_until(watermark)

    def flush(self) -> list[Window]:
        """Close every open window (the end of a replay)."""
        if not self.open or self.next_start is None:
            return []
        return self._close_until(max(self.open) + self.size)


class RuleRunner:
    """The rule set evaluated on every closed window; returns the alerts that changed state."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.evaluator = Evaluator(rules.rules)
        # rule -> the previous windows' values of its metric (the spike baselines)
        self.history: dict[str, deque] = {
            r.name: deque(maxlen=max(r.baseline, 2)) for r in rules.rules
        }
        self.values: dict[str, float | None] = {}  # rule -> its value in the last window

    def on_window(self, w: Window) -> list[Alert]:
        changed: list[Alert] = []
        for r in self.rules.rules:
            stats = w.groups.get(group_of(r)) or Stats()
            value: float | None
            if r.kind == "mention":
                counts: dict[str, int] = defaultdict(int)
                for p in w.posts:
                    if (
                        p.label == r.label
                        and (p.score or 0.0) >= r.min_score
                        and (r.source is None or p.source == r.source)
                        and (r.topic is None or p.topic == r.topic)
                    ):
                        for e in p.entities:
                            if r.entity in ("any", e):
                                counts[e] += 1
                top = max(counts.values(), default=0)
                holds, value = top >= r.min_count, float(top)
            else:
                value = stats.value(r.metric)
                if r.kind == "threshold":
                    holds = threshold_holds(r, stats.volume, value)
                else:
                    past = list(self.history[r.name])
                    holds = value is not None and spike_holds(r, past, value, stats.volume)
                    if value is not None and not holds:  # a spike's windows stay out of the
                        self.history[r.name].append(value)  # baseline: it fires until it ends
            self.values[r.name] = value
            changed += self.evaluator.step(r.name, w.end, holds, value)
        return changed
