"""Alert rules (tunelab.monitor.rules): the rule file's checks, and the pending -> firing ->
resolved states with for: and cooldown, in the posts' own time."""

from __future__ import annotations

import pytest

from tunelab.errors import ConfigError
from tunelab.monitor.rules import Evaluator, load_rules, parse_duration, spike_holds

GOOD = """
window: 5m
entities:
  Acme: [acme, 艾克米]
rules:
  - name: negative-share
    kind: threshold
    metric: negative_share
    op: ">"
    value: 0.5
    min_volume: 20
    for: 10m
    cooldown: 30m
    severity: critical
  - name: volume-spike
    kind: spike
    metric: volume
    method: zscore
    threshold: 3
    baseline: 6
  - name: acme-complaints
    kind: mention
    entity: Acme
    min_score: 0.9
"""


def test_a_rule_file_is_read_with_its_durations(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text(GOOD, encoding="utf-8")
    rs = load_rules(f)
    assert rs.window_s == 300 and rs.entities == {"Acme": ["acme", "艾克米"]}
    neg, spike, mention = rs.rules
    assert (neg.for_s, neg.cooldown_s, neg.severity, neg.min_volume) == (600, 1800, "critical", 20)
    assert spike.method == "zscore" and spike.baseline == 6
    assert mention.label == "negative" and mention.min_score == 0.9
    assert parse_duration("1.5h", "x") == 5400 and parse_duration(90, "x") == 90


@pytest.mark.parametrize(
    "change,message",
    [
        (("window: 5m", "window: soon"), r"window: 'soon' is not a duration"),
        (("window: 5m", "windw: 5m"), r"unknown key 'windw'"),
        (
            ("    for: 10m", "    for: ten"),
            r"rule 1 \(negative-share\): for: 'ten' is not a duration",
        ),
        (
            ("    min_volume: 20", "    min_vol: 20"),
            r"rule 1 \(negative-share\): unknown key 'min_vol'",
        ),
        (("    kind: spike", "    kind: spiky"), r"rule 2: 'kind' = 'spiky' must be threshold"),
        (("    entity: Acme", "    entity: Other"), r"entity 'Other' is not in 'entities'"),
        (("    value: 0.5", "    value: high"), r"'value' = 'high' must be a number"),
        (("    severity: critical", "    severity: urgent"), r"'severity' = 'urgent' must be info"),
        (("  - name: volume-spike", "  - name: negative-share"), r"is used twice"),
    ],
)
def test_mistakes_in_a_rule_file_name_the_file_rule_and_key(tmp_path, change, message):
    f = tmp_path / "rules.yaml"
    f.write_text(GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as e:
        load_rules(f)
    assert str(e.value).startswith(str(f)) and "\n" not in str(e.value)


def _states(ev: Evaluator, name: str, series: list[tuple[float, bool]]) -> list[tuple]:
    out = []
    for t, holds in series:
        out += [(a.state, t) for a in ev.step(name, t, holds, 1.0 if holds else 0.0)]
    return out


def test_pending_then_firing_after_for_then_resolved_then_a_cooldown(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text(GOOD, encoding="utf-8")
    ev = Evaluator(load_rules(f).rules)
    w = 300
    series = [(0, False), (w, True), (2 * w, True), (3 * w, True), (4 * w, True), (5 * w, False)]
    # the condition holds from 300 s; for: 10 min -> firing at 900 s; resolved when it stops
    assert _states(ev, "negative-share", series) == [
        ("pending", w),
        ("firing", 3 * w),
        ("resolved", 5 * w),
    ]
    # holding again inside the 30 min cooldown raises nothing; after it, pending again
    later = [(6 * w, True), (10 * w, True), (11 * w, True)]
    assert _states(ev, "negative-share", later) == [("pending", 11 * w)]


def test_a_pending_alert_that_stops_holding_is_dropped_without_firing():
    from tunelab.monitor.rules import Rule

    ev = Evaluator([Rule("r", "threshold", for_s=600)])
    flapping = [(t * 300, t % 2 == 1) for t in range(10)]  # holds one window in two
    assert [s for s, _ in _states(ev, "r", flapping)] == ["pending"] * 5  # never fires
    ev0 = Evaluator([Rule("now", "threshold", for_s=0)])
    assert [a.state for a in ev0.step("now", 0, True, 1.0)] == ["pending", "firing"]


def test_keep_firing_for_rides_out_a_quiet_window_then_resolves():
    from tunelab.monitor.rules import Rule

    ev = Evaluator([Rule("r", "mention", keep_firing_s=300)])
    w = 300
    burst = [(w, True), (2 * w, False), (3 * w, True), (4 * w, False), (5 * w, False)]
    # the quiet window at 600 s is within 5 min of the last holding one: still firing
    assert _states(ev, "r", burst) == [("pending", w), ("firing", w), ("resolved", 5 * w)]
    plain = Evaluator([Rule("r", "mention")])
    assert [s for s, _ in _states(plain, "r", burst)] == ["pending", "firing", "resolved"] * 2


def test_spikes_against_the_rolling_baseline():
    from tunelab.monitor.rules import Rule

    z = Rule("z", "spike", method="zscore", threshold=3, baseline=6)
    calm = [10, 12, 9, 11, 10, 12]
    assert spike_holds(z, calm, 40, volume=40) and not spike_holds(z, calm, 13, volume=13)
    assert not spike_holds(z, calm[:3], 40, volume=40)  # no baseline yet: no verdict
    e = Rule("e", "spike", method="ewma", threshold=2.5, baseline=6, alpha=0.3)
    assert spike_holds(e, calm, 40, volume=40) and not spike_holds(e, calm, 20, volume=20)
