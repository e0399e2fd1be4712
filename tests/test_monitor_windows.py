"""Windows in the posts' own time and the rules run on them: a seeded baseline with an injected
burst of negative posts, a volume spike and an entity's complaints; each alert fires within two
windows of its burst, resolves after it, and nothing fires on the baseline. Posts a little out
of order count where they belong, and a replay in any order of arrival within the lateness gives
the same alerts."""

from __future__ import annotations

import random

import pytest

from tunelab.monitor.rules import load_rules
from tunelab.monitor.windows import Analysed, RuleRunner, Windows

RULES = """
window: 5m
entities:
  Acme: [acme]
rules:
  - {name: negative-surge, kind: threshold, metric: negative_share, op: ">", value: 0.5,
     min_volume: 10, for: 5m, cooldown: 15m, severity: critical}
  - {name: volume-spike, kind: spike, metric: volume, method: zscore, threshold: 4,
     baseline: 12, min_volume: 10, cooldown: 15m}
  - {name: acme-complaints, kind: mention, entity: Acme, min_score: 0.9, for: 0s, cooldown: 15m}
"""
W = 300


def _stream(seed: int, kind: str) -> tuple[list[Analysed], int, int]:
    """Two hours of posts (24 windows) with one burst of ``kind`` starting at a seeded
    window; returns the posts in time order and the burst's first and last window."""
    rng = random.Random(seed)
    start, length = rng.randint(12, 16), rng.randint(2, 4)
    posts: list[Analysed] = []
    for w in range(24):
        in_burst = start <= w < start + length
        n = rng.randint(20, 30) * (5 if in_burst and kind == "volume" else 1)
        neg = 0.75 if in_burst and kind == "negative" else 0.15
        for i in range(n):
            t = w * W + rng.uniform(0, W)
            label = "negative" if rng.random() < neg else "positive"
            ents: tuple[str, ...] = ()
            if in_burst and kind == "entity" and i < 3:
                label, ents = "negative", ("Acme",)
            elif rng.random() < 0.02:  # Acme mentioned in passing, not angrily
                ents = ("Acme",)
                label = "positive"
            posts.append(
                Analysed(
                    f"{w}-{i}", t, "weibo", label, rng.uniform(0.92, 0.99) if ents else 0.8, ents
                )
            )
    posts.sort(key=lambda p: p.time)
    return posts, start, start + length - 1


def _alerts(tmp_path, posts):
    f = tmp_path / "rules.yaml"
    f.write_text(RULES, encoding="utf-8")
    windows, runner = Windows(W), RuleRunner(load_rules(f))
    out = []
    for p in posts:
        for w in windows.add(p):
            out += runner.on_window(w)
    for w in windows.flush():
        out += runner.on_window(w)
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "kind,rule",
    [("negative", "negative-surge"), ("volume", "volume-spike"), ("entity", "acme-complaints")],
)
def test_the_burst_fires_its_alert_in_time_and_the_baseline_fires_none(tmp_path, seed, kind, rule):
    posts, first, last = _stream(seed, kind)
    alerts = _alerts(tmp_path, posts)
    fired = [a for a in alerts if a.state == "firing"]
    assert [a.rule for a in fired] == [rule], [(a.rule, a.state, a.started_at / W) for a in alerts]
    burst_start, burst_end = first * W, (last + 1) * W
    assert burst_start < fired[0].fired_at <= burst_start + 2 * W  # within two windows
    resolved = [a for a in alerts if a.state == "resolved"]
    assert [a.rule for a in resolved] == [rule]
    assert burst_end <= resolved[0].resolved_at <= burst_end + 2 * W


def test_out_of_order_arrival_within_the_lateness_gives_the_same_alerts(tmp_path):
    posts, _, _ = _stream(3, "negative")
    shuffled = posts[:]
    rng = random.Random(0)
    for i in range(0, len(shuffled) - 20, 20):  # jitter by a few posts (well under a window)
        chunk = shuffled[i : i + 20]
        rng.shuffle(chunk)
        shuffled[i : i + 20] = chunk
    key = lambda alerts: [(a.rule, a.state, a.started_at, a.fired_at) for a in alerts]  # noqa: E731
    assert key(_alerts(tmp_path, shuffled)) == key(_alerts(tmp_path, posts))


def test_quiet_windows_close_too_and_late_posts_are_counted_out():
    windows = Windows(W)
    assert windows.add(Analysed("a", 10, "s", "negative", 0.9)) == []
    closed = windows.add(Analysed("b", 10 * W + 5, "s", "positive", 0.9))  # 9 windows later
    assert [w.start for w in closed] == [i * W for i in range(9)]
    assert closed[0].groups["all"].volume == 1 and closed[1].groups["all"].volume == 0
    windows.add(Analysed("late", 20, "s", "positive", 0.9))  # its window closed long ago
    assert windows.late == 1
