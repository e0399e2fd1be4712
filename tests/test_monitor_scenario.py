"""The judged scenario: real bundled reviews replayed with a negative burst, a volume spike and
complaints about one entity (positions, sizes and entity drawn from the seed), through the real
MiniLM sentiment run of the session and the shipped rule file. Each alert fires within two
windows of its burst's start and resolves after it; nothing fires on the baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

import tunelab
from tunelab.monitor.config import MonitorConfig
from tunelab.monitor.engine import Monitor
from tunelab.monitor.rules import load_rules
from tunelab.monitor.scenario import make_stream
from tunelab.monitor.sources import replay

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "configs" / "monitor" / "rules.yaml"
pytestmark = pytest.mark.slow
EXPECTED = {"negative": "negative-surge", "spike": "volume-spike", "mention": "entity-complaints"}


@pytest.fixture(scope="module")
def sentiment(minilm_sentiment):
    return tunelab.load(minilm_sentiment[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_burst_fires_its_alert_in_time_and_the_baseline_none(sentiment, tmp_path, seed):
    truth = make_stream(tmp_path / "posts.jsonl", "en", seed)
    cfg = MonitorConfig(
        database=str(tmp_path / "m.db"),
        rules=load_rules(RULES),
        rules_file=str(RULES),
        sentiment="(loaded)",
        batch_size=128,
    )
    summary = Monitor(cfg, model=sentiment).run(replay(tmp_path / "posts.jsonl"))
    assert summary.stored == truth["posts"]
    w = truth["window_s"]
    fired = {a["rule"]: a["at"] for a in summary.alerts if a["state"] == "firing"}
    resolved = {a["rule"]: a["at"] for a in summary.alerts if a["state"] == "resolved"}
    events = [
        (a["rule"], a["state"], (a["at"] - truth["bursts"]["negative"]["start_s"]) / w)
        for a in summary.alerts
    ]
    assert set(fired) == set(EXPECTED.values()), (truth, events)  # and no false alert
    assert sum(a["state"] == "firing" for a in summary.alerts) == 3, events
    for kind, rule in EXPECTED.items():
        b = truth["bursts"][kind]
        assert b["start_s"] < fired[rule] <= b["start_s"] + 2 * w, (kind, events)
        assert b["end_s"] <= resolved[rule] <= b["end_s"] + 3 * w, (kind, events)
