"""Where the monitor's posts come from: replayed files and folders, a followed JSONL file
(appends, a half-written line, rotation), standard input; malformed posts named by file, line
and field."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime, timezone

import pytest

from tunelab.errors import DataError
from tunelab.monitor.sources import follow, parse_time, replay, stdin_posts


def test_replay_reads_csv_jsonl_and_txt_with_ids_times_and_sources(tmp_path):
    (tmp_path / "a.csv").write_text(
        "id,text,time,source\n"
        "7,great phone,2026-12-01T08:00:00Z,weibo\n"
        "8,bad battery,1764576000,\n",
        encoding="utf-8",
    )
    (tmp_path / "b.jsonl").write_text(
        '{"id": "x1", "text": "服务很好", "time": "2026-12-01 08:05:00"}\n', encoding="utf-8"
    )
    (tmp_path / "c.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    posts = list(replay(tmp_path))
    assert [(p.post_id, p.source) for p in posts] == [
        ("7", "weibo"),
        ("8", "a"),
        ("x1", "b"),
        ("1", "c"),
        ("3", "c"),
    ]
    assert posts[0].time == datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    assert posts[1].time == datetime.fromtimestamp(1764576000, timezone.utc)
    assert posts[2].time.tzinfo is not None  # no zone given: UTC


def test_rate_paces_the_replay_only(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("".join(f'{{"id": {i}, "text": "t{i}", "time": {i}}}\n' for i in range(6)))
    t0 = time.monotonic()
    posts = list(replay(f, rate=20))
    assert time.monotonic() - t0 >= 0.2  # 6 posts at 20 a second
    assert [p.time.timestamp() for p in posts] == [0, 1, 2, 3, 4, 5]  # their own times


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"id": 1, "text": ""}\n', r"p.jsonl:1: field 'text': missing or empty text"),
        (
            '{"id": 1, "text": "ok"}\n{"id": 2, "text": "ok", "time": "yesterday"}\n',
            r"p.jsonl:2: field 'time': time 'yesterday' is not ISO 8601",
        ),
        ('{"id": 1, "text": "ok"}\nnot json\n', r"p.jsonl:2: not valid JSON"),
        ('{"id": true, "text": "ok"}\n', r"p.jsonl:1: field 'id'"),
    ],
)
def test_a_malformed_post_names_file_line_and_field(tmp_path, content, message):
    f = tmp_path / "p.jsonl"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        list(replay(f))


def test_follow_reads_appends_waits_for_a_whole_line_and_survives_rotation(tmp_path):
    f = tmp_path / "live.jsonl"
    f.write_text('{"id": "old", "text": "before we started"}\n', encoding="utf-8")
    got, done = [], threading.Event()

    def run():
        for p in follow(f, poll=0.02, stop=done.is_set):
            got.append(p.post_id)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.2)
    with open(f, "a", encoding="utf-8") as h:
        h.write('{"id": "a", "text": "one"}\n{"id": "b", "te')
    time.sleep(0.2)
    assert got == ["a"]  # the old line was there before; b is half-written
    with open(f, "a", encoding="utf-8") as h:
        h.write('xt": "two"}\n')
    time.sleep(0.2)
    f.rename(tmp_path / "live.1.jsonl")  # rotation: a new file takes the name
    f.write_text('{"id": "c", "text": "three"}\n', encoding="utf-8")
    deadline = time.time() + 5
    while "c" not in got and time.time() < deadline:
        time.sleep(0.05)
    done.set()
    t.join(timeout=5)
    assert got == ["a", "b", "c"]


def test_stdin_and_time_parsing():
    posts = list(stdin_posts(io.StringIO('{"id": 1, "text": "hi", "source": "app"}\n\n')))
    assert [(p.post_id, p.source) for p in posts] == [("1", "app")]
    assert parse_time("2026-12-01T08:00:00+08:00", "f", 1).utcoffset().total_seconds() == 8 * 3600
