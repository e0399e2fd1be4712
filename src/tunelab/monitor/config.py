"""``monitor.yaml``: what ``tunelab monitor`` reads, checked with one-line errors.

    database: runs/monitor.db          # a SQLite file, or any SQLAlchemy URL (postgresql://...)
    rules: configs/monitor_rules.yaml  # window, entities and alert rules (monitor/rules.py)
    sentiment: runs/demo               # a text-classification run or export with a
                                       # "negative" label (int8 ONNX: fastest without bf16)
    entities_model: runs/ner           # optional: an NER run; else the rules' keyword lists
    topic_model: runs/topics           # optional: a text-classification run giving a topic
    functions: [score, extract_entities]  # optional: registered task functions, each result
                                       # stored as an analysis (entities also as mentions)
    batch_size: 256                    # posts analysed (length-sorted) and committed together
    webhook: https://hooks.example/x   # optional: alerts POSTed as JSON (retries, a timeout)
    webhook_timeout: 5s
    webhook_retries: 3

Relative paths are read from the folder of the file that names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ConfigError
from tunelab.monitor.rules import RuleSet, load_rules, parse_duration

KEYS = (
    "database",
    "rules",
    "sentiment",
    "entities_model",
    "topic_model",
    "functions",
    "batch_size",
    "webhook",
    "webhook_timeout",
    "webhook_retries",
)


@dataclass
class MonitorConfig:
    database: str
    rules: RuleSet
    rules_file: str
    sentiment: str
    entities_model: str | None = None
    topic_model: str | None = None
    functions: tuple[str, ...] = ()
    batch_size: int = 256
    webhook: str | None = None
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3


def _path(base: Path, value: str) -> str:
    if "://" in value:
        return value
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else base / p)


def load_config(path: str | Path) -> MonitorConfig:
    from tunelab.config import read_mapping

    p = Path(path)
    raw = read_mapping(p, "monitor config")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{p}: unknown key '{unknown[0]}' (known: {', '.join(KEYS)})")
    for key in ("database", "rules", "sentiment"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ConfigError(f"{p}: '{key}' is required (a path or URL)")
    base = p.resolve().parent
    batch = raw.get("batch_size", 256)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 10_000:
        raise ConfigError(f"{p}: 'batch_size' = {batch!r} must be a whole number in 1..10000")
    retries = raw.get("webhook_retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"{p}: 'webhook_retries' = {retries!r} must be a whole number >= 0")
    webhook = raw.get("webhook")
    if webhook is not None and not (
        isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
    ):
        raise ConfigError(f"{p}: 'webhook' = {webhook!r} must be an http(s) URL")
    functions = raw.get("functions") or []
    if not isinstance(functions, list) or not all(isinstance(f, str) for f in functions):
        raise ConfigError(f"{p}: 'functions' must be a list of task function names")
    from tunelab.functions.catalog import get_function, task_functions

    for f in functions:
        if get_function(f) is None or f in ("answer", "generate"):
            known = ", ".join(
                t.name for t in task_functions() if t.name not in ("answer", "generate")
            )
            raise ConfigError(f"{p}: functions: {f!r} is not a task function of one text ({known})")
    rules_file = _path(base, raw["rules"])
    ner, topic = raw.get("entities_model"), raw.get("topic_model")
    return MonitorConfig(
        database=_path(base, raw["database"]),
        rules=load_rules(rules_file, open_entities=bool(ner) or "extract_entities" in functions),
        rules_file=rules_file,
        sentiment=_path(base, raw["sentiment"]),
        entities_model=_path(base, ner) if isinstance(ner, str) and ner else None,
        topic_model=_path(base, topic) if isinstance(topic, str) and topic else None,
        functions=tuple(functions),
        batch_size=batch,
        webhook=webhook,
        webhook_timeout_s=parse_duration(raw.get("webhook_timeout", "5s"), f"{p}: webhook_timeout"),
        webhook_retries=retries,
    )
