"""The monitor's optional models on real (tiny) runs, in process: entities from an NER run join the
keyword lists, are stored as mentions and may be named by rules; a topic classifier adds a topic
analysis and topic groups (per-topic rules, the dashboard's topic table); a live stream's windows
close on the clock while it is quiet."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tunelab.monitor import queries
from tunelab.monitor.config import load_config
from tunelab.monitor.engine import Monitor
from tunelab.store import schema
from tunelab.store.posts import Post

RULES = """
window: 1m
entities:
  Acme: [acme]
rules:
  - {name: topic-volume, kind: threshold, metric: volume, op: ">=", value: 3, topic: positive}
"""


def _monitor(tmp_path, runs, rules: str = RULES) -> Monitor:
    (tmp_path / "rules.yaml").write_text(rules, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text(
        f"database: m.db\nrules: rules.yaml\nsentiment: {runs['classify']}\n"
        f"entities_model: {runs['ner']}\ntopic_model: {runs['classify']}\n",
        encoding="utf-8",
    )
    return Monitor(load_config(tmp_path / "monitor.yaml"))


def test_ner_entities_and_topics_are_stored_and_grouped(runs, tmp_path):
    import tunelab

    mon = _monitor(tmp_path, runs)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    texts = [f"word{i} acme great movie w{i % 5} x y z" for i in range(12)]
    batch = [Post(str(i), t, t0 + timedelta(seconds=5 * i), "s") for i, t in enumerate(texts)]
    mon.process(batch)
    ner = tunelab.load(runs["ner"]).predict(texts)
    topics = tunelab.load(runs["classify"]).predict(texts)
    with mon.engine.connect() as conn:
        named = conn.execute(
            sa.select(schema.posts.c.post_id, schema.mentions.c.entity).join(
                schema.mentions, schema.mentions.c.seq == schema.posts.c.seq
            )
        ).all()
        stored_topics = dict(
            conn.execute(
                sa.select(schema.posts.c.post_id, schema.analyses.c.label)
                .join(schema.analyses, schema.analyses.c.seq == schema.posts.c.seq)
                .where(schema.analyses.c.model == "topic")
            ).all()
        )
    for i in range(len(texts)):
        want = {"Acme"} | {e["text"][:200] for e in ner[i]["entities"]}
        assert {e for pid, e in named if pid == str(i)} == want
        assert stored_topics[str(i)] == topics[i]["label"]
    o = queries.overview(mon.engine, 3600, window_s=60)
    by_topic = {g["name"]: g["volume"] for g in o["topics"]}
    assert by_topic == {
        label: sum(t["label"] == label for t in topics) for label in {t["label"] for t in topics}
    }
    assert o["entities"]["top"][0] == {
        "entity": "Acme",
        "volume": 12,
        "negative": sum(
            p["label"] == "negative" for p in tunelab.load(runs["classify"]).predict(texts)
        ),
    }


def test_a_quiet_live_stream_closes_its_windows_on_the_clock(runs, tmp_path):
    mon = _monitor(tmp_path, runs)
    now = datetime.now(timezone.utc)
    mon.process([Post("live", "great acme", now - timedelta(seconds=150), "s")])
    assert mon.summary.windows == 0  # nothing later has arrived to close its window
    mon.tick(now.timestamp())
    assert mon.summary.windows >= 1  # closed by the clock, past the allowed lateness
    (tmp_path / "old").mkdir()
    old = _monitor(tmp_path / "old", runs)  # a replay of month-old posts: not on the clock
    old.process([Post("old", "great", now - timedelta(days=30), "s")])
    old.tick(now.timestamp())
    assert old.summary.windows == 0


def test_registered_task_functions_add_analyses_and_entities(runs, registry, tmp_path):
    from tunelab.errors import ConfigError
    from tunelab.functions import extract_entities, score

    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"database: m.db\nrules: rules.yaml\nsentiment: {runs['classify']}\n"
        "functions: [score, extract_entities]\n",
        encoding="utf-8",
    )
    mon = Monitor(load_config(cfg))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    texts = [f"w{i} great movie w{i % 3} x y" for i in range(8)]
    mon.process([Post(str(i), t, t0 + timedelta(seconds=i), "s") for i, t in enumerate(texts)])
    with mon.engine.connect() as conn:
        got = conn.execute(
            sa.select(schema.posts.c.post_id, schema.analyses.c.score)
            .join(schema.analyses, schema.analyses.c.seq == schema.posts.c.seq)
            .where(schema.analyses.c.model == "score")
        ).all()
        named = conn.execute(
            sa.select(schema.posts.c.post_id, schema.mentions.c.entity).join(
                schema.mentions, schema.mentions.c.seq == schema.posts.c.seq
            )
        ).all()
    want = score(texts)
    assert sorted((int(p), round(s, 5)) for p, s in got) == [
        (i, round(v, 5)) for i, v in enumerate(want)
    ]
    ents = extract_entities(texts)
    for i in range(len(texts)):
        assert {e for pid, e in named if pid == str(i)} == {e.text for e in ents[i]}
    cfg.write_text(cfg.read_text().replace("score,", "horoscope,"), encoding="utf-8")
    with pytest.raises(ConfigError, match="functions: 'horoscope' is not a task function"):
        load_config(cfg)


def test_a_rule_names_an_entity_the_ner_run_finds_and_only_then(runs, tmp_path):
    import random
    from collections import Counter

    import tunelab
    from test_token_classification import _sentence
    from tunelab.errors import ConfigError

    rng = random.Random(1)
    texts = [" ".join(_sentence(rng, "BIO")[0]) for _ in range(24)]
    found = [{e["text"] for e in p["entities"]} for p in tunelab.load(runs["ner"]).predict(texts)]
    named = Counter(n for names in found for n in names)
    assert named, "the NER run found no entity in sentences like its training ones"
    name, count = named.most_common(1)[0]
    rule = (
        f"  - {{name: named, kind: threshold, metric: volume, op: '>=', value: 1, "
        f"min_volume: 1, entity: {json.dumps(name)}}}\n"
    )
    mon = _monitor(tmp_path, runs, RULES + rule)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    mon.process([Post(str(i), t, t0 + timedelta(seconds=i), "s") for i, t in enumerate(texts)])
    mon.process([Post("later", "x", t0 + timedelta(minutes=3), "s")])  # closes the windows
    fired = [a for a in mon.summary.alerts if a["rule"] == "named" and a["state"] == "firing"]
    assert len(fired) == 1 and fired[0]["value"] == count, mon.summary.alerts
    # without a model that names entities, the same rule file is refused on load
    (tmp_path / "monitor.yaml").write_text(
        f"database: m.db\nrules: rules.yaml\nsentiment: {runs['classify']}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=r"rule 2 \(named\): entity .* is not in 'entities'"):
        load_config(tmp_path / "monitor.yaml")
