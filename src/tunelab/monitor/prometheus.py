"""The rule file as Prometheus alerting rules, for teams whose alerts go through Alertmanager:
``tunelab monitor prometheus-rules --config monitor.yaml > tunelab-alerts.yml``, then list the
file under ``rule_files:`` and scrape the monitor's ``/metrics``.

The monitor publishes, at the close of each window, the gauges these rules read:

    tunelab_monitor_window_posts{group}            posts in the window (group: all,
    tunelab_monitor_window_negative_share{group}   source:NAME, topic:NAME, entity:NAME;
    tunelab_monitor_window_mean_score{group}       the groups the rules read)
    tunelab_monitor_rule_value{rule}               each rule's own value (mention rules)
    tunelab_monitor_alert_firing{rule}             1 while tunelab's own alert fires

Differences, by nature of the two systems: Prometheus evaluates on its clock at scrape times,
tunelab on the posts' own time at each window's close (the same on a live stream; a replay of
old posts only alerts in tunelab); a spike's baseline is ``avg_over_time``/``stddev_over_time``
of the gauge over the baseline's length (a time average of the same windows); an EWMA baseline
becomes the plain mean; ``cooldown`` has no rule-side equivalent (Alertmanager's
``repeat_interval`` is the nearest), and is kept as an annotation.
"""

from __future__ import annotations

import yaml

from tunelab.monitor.rules import Rule, RuleSet, describe, format_duration, group_of

METRIC = {
    "volume": "tunelab_monitor_window_posts",
    "negative_share": "tunelab_monitor_window_negative_share",
    "mean_score": "tunelab_monitor_window_mean_score",
}


def _sel(metric: str, group: str) -> str:
    return f'{METRIC[metric]}{{group="{group}"}}'


def expr(r: Rule, window_s: float) -> str:
    """The PromQL condition of rule ``r``."""
    if r.kind == "mention":
        return f'tunelab_monitor_rule_value{{rule="{r.name}"}} >= {r.min_count}'
    g = group_of(r)
    value = _sel(r.metric, g)
    volume = f"{_sel('volume', g)} >= {r.min_volume}"
    if r.kind == "threshold":
        return f"{value} {r.op} {r.value:g} and {volume}"
    span, offset = format_duration(r.baseline * window_s), format_duration(window_s)
    mean = f"avg_over_time({value}[{span}] offset {offset})"
    if r.method == "zscore":
        sd = f"stddev_over_time({value}[{span}] offset {offset})"
        floor = f"clamp_min({sd}, 0.1 * abs({mean}))"
        cond = f"({value} - {mean}) > {r.threshold:g} * {floor}"
    else:
        cond = f"{value} > {r.threshold:g} * {mean}"
    return f"{cond} and {volume}"


def alerting_rules(rules: RuleSet) -> str:
    """A Prometheus rule file (YAML) with one alerting rule per tunelab rule."""
    out = []
    for r in rules.rules:
        annotations = {"summary": describe(r)}
        if r.description:
            annotations["description"] = r.description
        if r.cooldown_s:
            annotations["tunelab_cooldown"] = format_duration(r.cooldown_s)
        item: dict[str, object] = {"alert": r.name, "expr": expr(r, rules.window_s)}
        if r.for_s:
            item["for"] = format_duration(r.for_s)
        if r.keep_firing_s:
            item["keep_firing_for"] = format_duration(r.keep_firing_s)
        item["labels"] = {"severity": r.severity, "source": "tunelab-monitor"}
        item["annotations"] = annotations
        out.append(item)
    doc = {"groups": [{"name": "tunelab-monitor", "rules": out}]}
    head = (
        "# Prometheus alerting rules from tunelab's rule file (tunelab monitor prometheus-rules)\n"
    )
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)
