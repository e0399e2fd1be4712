"""Alert rules: read and checked from YAML, then evaluated window by window with the states users
know from Prometheus alerting rules.

A rule's condition is tested at the end of each window (in the posts' own time, so a replay at
any speed gives the same alerts). While it holds the alert is *pending*; once it has held for
the rule's ``for:`` duration it is *firing*; when it stops holding, a firing alert is *resolved*
(a pending one is simply dropped), unless the rule has ``keep_firing_for:`` (as in Prometheus):
then a firing alert stays firing until its condition has failed for that long, so one quieter
window inside a burst does not resolve it. After a resolution the rule waits ``cooldown``
before it may go pending again, so a value hovering at the threshold does not flap.

Kinds of rule:

- ``threshold``: a window's ``metric`` (``volume``, ``negative_share``, ``mean_score``) against
  ``value`` with ``op`` (``>``, ``>=``, ``<``, ``<=``), only when the window holds at least
  ``min_volume`` posts; optionally for one ``source``, ``topic`` or ``entity``.
- ``spike``: a window's ``metric`` against its own rolling baseline of the previous ``baseline``
  windows: ``method: zscore`` (``threshold`` standard deviations above the mean) or
  ``method: ewma`` (``threshold`` times the exponentially weighted mean, ``alpha``).
- ``mention``: at least ``min_count`` (default 1) posts in the window mentioning ``entity``
  (``any``: one and the same entity, whichever it is) whose ``label`` (default negative) scores
  at least ``min_score``.

A rule's ``entity`` is a name of the ``entities`` keyword lists or, when the monitor has an NER
run (``entities_model``) or the ``extract_entities`` function, any name the model finds (as it
writes it: ``北京``, ``Disney``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import ConfigError

KINDS = ("threshold", "spike", "mention")
METRICS = ("volume", "negative_share", "mean_score")
OPS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
SEVERITIES = ("info", "warning", "critical")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

COMMON = {
    "name",
    "kind",
    "severity",
    "for",
    "keep_firing_for",
    "cooldown",
    "source",
    "topic",
    "entity",
    "description",
}
KEYS = {
    "threshold": COMMON | {"metric", "op", "value", "min_volume"},
    "spike": COMMON | {"metric", "method", "threshold", "baseline", "alpha", "min_volume"},
    "mention": COMMON | {"label", "min_score", "min_count"},
}


def parse_duration(value: Any, where: str) -> float:
    """``"90s"``, ``"5m"``, ``"1.5h"``, ``"1d"`` (or a number of seconds) -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    m = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if not m:
        raise ConfigError(f"{where}: {value!r} is not a duration (use 30s, 5m, 2h or 1d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass
class Rule:
    name: str
    kind: str
    severity: str = "warning"
    for_s: float = 0.0
    cooldown_s: float = 0.0
    keep_firing_s: float = 0.0
    source: str | None = None
    topic: str | None = None
    entity: str | None = None
    metric: str = "negative_share"
    op: str = ">"
    value: float = 0.0
    min_volume: int = 1
    method: str = "zscore"
    threshold: float = 3.0
    baseline: int = 12
    alpha: float = 0.3
    label: str = "negative"
    min_score: float = 0.0
    min_count: int = 1
    description: str = ""


@dataclass
class RuleSet:
    window_s: float
    rules: list[Rule]
    entities: dict[str, list[str]] = field(default_factory=dict)  # name -> keywords


def load_rules(path: str | Path, open_entities: bool = False) -> RuleSet:
    """Read and check a rule file; any mistake is a ConfigError naming the file, the rule and
    the key. ``open_entities``: a model names entities, so a rule may name one that is not in
    the keyword lists."""
    from tunelab.config import read_mapping

    p = Path(path)
    raw = read_mapping(p, "rule file")
    unknown = set(raw) - {"window", "rules", "entities"}
    if unknown:
        raise ConfigError(f"{p}: unknown key '{sorted(unknown)[0]}' (use window, rules, entities)")
    window = parse_duration(raw.get("window", "5m"), f"{p}: window")
    if window <= 0:
        raise ConfigError(f"{p}: window must be longer than 0")
    entities = raw.get("entities") or {}
    if not isinstance(entities, dict) or not all(
        isinstance(v, list) and all(isinstance(w, str) and w for w in v) for v in entities.values()
    ):
        raise ConfigError(f"{p}: entities must map each name to a list of keywords")
    items = raw.get("rules")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{p}: 'rules' must be a non-empty list")
    rules, names = [], set()
    for i, item in enumerate(items, 1):
        rule = _rule(item, f"{p}: rule {i}", {str(k) for k in entities}, open_entities)
        if rule.name in names:
            raise ConfigError(f"{p}: rule {i}: the name {rule.name!r} is used twice")
        names.add(rule.name)
        rules.append(rule)
    return RuleSet(window, rules, {str(k): list(v) for k, v in entities.items()})


def _rule(item: Any, where: str, entities: set[str], open_entities: bool = False) -> Rule:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping of key: value")
    kind = item.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: 'kind' = {kind!r} must be {', '.join(KINDS)}")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: every rule needs a 'name'")
    where = f"{where} ({name})"
    unknown = set(item) - KEYS[kind]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{sorted(unknown)[0]}' for a {kind} rule "
            f"(known: {', '.join(sorted(KEYS[kind]))})"
        )
    r = Rule(name=name, kind=kind)
    r.severity = _choice(item, "severity", SEVERITIES, "warning", where)
    r.for_s = parse_duration(item.get("for", 0), f"{where}: for")
    r.cooldown_s = parse_duration(item.get("cooldown", 0), f"{where}: cooldown")
    r.keep_firing_s = parse_duration(item.get("keep_firing_for", 0), f"{where}: keep_firing_for")
    r.source = _text(item, "source", where)
    r.topic = _text(item, "topic", where)
    r.entity = _text(item, "entity", where)
    r.description = _text(item, "description", where) or ""
    if r.entity not in (None, "any") and r.entity not in entities and not open_entities:
        raise ConfigError(
            f"{where}: entity {r.entity!r} is not in 'entities' (a rule names an entity of the "
            "keyword lists, or any the monitor's entities_model finds)"
        )
    if kind in ("threshold", "spike"):
        r.metric = _choice(item, "metric", METRICS, "negative_share", where)
        r.min_volume = int(_number(item, "min_volume", 1, where, low=0))
    if kind == "threshold":
        r.op = _choice(item, "op", tuple(OPS), ">", where)
        if "value" not in item:
            raise ConfigError(f"{where}: a threshold rule needs 'value'")
        r.value = _number(item, "value", 0.0, where)
    elif kind == "spike":
        r.method = _choice(item, "method", ("zscore", "ewma"), "zscore", where)
        r.threshold = _number(item, "threshold", 3.0, where, low=0.0)
        r.baseline = int(_number(item, "baseline", 12, where, low=2))
        r.alpha = _number(item, "alpha", 0.3, where, low=0.0)
    else:
        if r.entity is None:
            raise ConfigError(f"{where}: a mention rule needs 'entity'")
        r.label = _text(item, "label", where) or "negative"
        r.min_score = _number(item, "min_score", 0.0, where, low=0.0)
        r.min_count = int(_number(item, "min_count", 1, where, low=1))
    return r


def format_duration(seconds: float) -> str:
    """300 -> ``5m``, 5400 -> ``90m``, 7 -> ``7s``: the units ``parse_duration`` reads."""
    s = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def group_of(r: Rule) -> str:
    """The window group a threshold or spike rule reads (``monitor.windows.group_keys``)."""
    if r.source:
        return f"source:{r.source}"
    if r.topic:
        return f"topic:{r.topic}"
    return f"entity:{r.entity}" if r.entity else "all"


def describe(r: Rule) -> str:
    """The rule's condition in one line, for the alert history, the dashboard and webhooks."""
    scope = "" if group_of(r) == "all" else f" [{group_of(r)}]"
    if r.kind == "threshold":
        cond = f"{r.metric} {r.op} {r.value:g}{scope} with at least {r.min_volume} posts"
    elif r.kind == "spike":
        how = (
            f"{r.threshold:g} standard deviations above"
            if r.method == "zscore"
            else f"{r.threshold:g}x the EWMA (alpha {r.alpha:g}) of"
        )
        cond = f"{r.metric}{scope} {how} the previous {r.baseline} windows"
    else:
        who = "one entity" if r.entity == "any" else f"entity {r.entity}"
        cond = f"{who} in >= {r.min_count} {r.label} posts scoring >= {r.min_score:g}"
        if r.source or r.topic:
            cond += f" [{'source:' + r.source if r.source else 'topic:' + str(r.topic)}]"
    if r.for_s:
        cond += f", for {format_duration(r.for_s)}"
    return cond


def _choice(item: dict, key: str, choices: tuple, default: str, where: str) -> str:
    value = item.get(key, default)
    if value not in choices:
        raise ConfigError(f"{where}: '{key}' = {value!r} must be {', '.join(choices)}")
    return str(value)


def _number(item: dict, key: str, default: float, where: str, low: float | None = None) -> float:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{where}: '{key}' = {value!r} must be a number")
    if low is not None and value < low:
        raise ConfigError(f"{where}: '{key}' = {value!r} must be >= {low:g}")
    return float(value)


def _text(item: dict, key: str, where: str) -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' = {value!r} must be text")
    return value


@dataclass
class Alert:
    """One alert of a rule: pending, then firing, then resolved (times in the posts' time,
    seconds since the epoch)."""

    rule: str
    severity: str
    state: str
    started_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    value: float | None = None
    held_at: float | None = None  # the last window end at which the condition held


class Evaluator:
    """Feeds each window's value of each rule through the pending/firing/resolved states;
    returns the alerts that changed state, for delivery and the alert history."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = {r.name: r for r in rules}
        self.active: dict[str, Alert] = {}
        self.quiet_until: dict[str, float] = {}  # rule -> end of its cooldown

    def step(self, rule_name: str, t: float, holds: bool, value: float | None) -> list[Alert]:
        """The rule's condition at the end of the window ending at ``t``; returns a copy of
        the rule's alert at each state it entered (pending, firing, resolved)."""
        r = self.rules[rule_name]
        a = self.active.get(rule_name)
        changed: list[Alert] = []
        if holds:
            if a is None:
                if t < self.quiet_until.get(rule_name, -math.inf):
                    return changed  # cooling down after the last resolution
                a = Alert(rule_name, r.severity, "pending", t, value=value)
                self.active[rule_name] = a
                changed.append(dataclasses.replace(a))
            a.value, a.held_at = value, t
            if a.state == "pending" and t - a.started_at >= r.for_s:
                a.state, a.fired_at = "firing", t
                changed.append(dataclasses.replace(a))
        elif a is not None:
            if a.state == "firing" and t - (a.held_at or t) <= r.keep_firing_s:
                return changed  # still firing: kept for keep_firing_for after it last held
            del self.active[rule_name]  # a pending alert that stops holding is dropped
            if a.state == "firing":  # its value: the window's that no longer holds
                a.state, a.resolved_at, a.value = "resolved", t, value
                self.quiet_until[rule_name] = t + r.cooldown_s
                changed.append(dataclasses.replace(a))
        return changed


def threshold_holds(r: Rule, volume: int, value: float | None) -> bool:
    if volume < r.min_volume or value is None:
        return False
    return OPS[r.op](float(value), r.value)


def spike_holds(r: Rule, history: list[float], value: float, volume: int) -> bool:
    """``value`` against the rule's baseline, the previous windows' values (oldest first)."""
    if volume < r.min_volume or len(history) < r.baseline:
        return False
    base = history[-r.baseline :]
    if r.method == "zscore":
        mean = sum(base) / len(base)
        sd = math.sqrt(sum((x - mean) ** 2 for x in base) / (len(base) - 1))
        return value > mean + r.threshold * max(sd, 1e-9, 0.1 * abs(mean))
    ewma = base[0]
    for x in base[1:]:
        ewma = r.alpha * x + (1 - r.alpha) * ewma
    return value > r.threshold * max(ewma, 1e-9)
