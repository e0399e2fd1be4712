"""The monitor's dashboard in a real headless browser (Debian's chromium via Playwright), inside a
real `tunelab studio --monitor` process with API keys: sign in, the charts and tables filled
from the stream, posts ingested over HTTP appearing without a reload (volume, the alert
timeline with the rule that fired and why), the Chinese page. Screenshots go to
tests/artifacts/monitor/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from browser_helpers import chromium_page
from serving_helpers import Server
from test_monitor_cli import RULES, _posts
from tunelab.web.keys import add_key

SHOTS = Path(__file__).parent / "artifacts" / "monitor"
TUNELAB = str(Path(sys.executable).parent / "tunelab")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(trained_runs, tmp_path_factory):
    d = tmp_path_factory.mktemp("monitor-browser")
    (d / "rules.yaml").write_text(
        RULES.replace("Acme: [acme]", "Acme: [acme]\n  Globex: [globex]"), encoding="utf-8"
    )
    cfg = d / "monitor.yaml"
    cfg.write_text(
        f"database: m.db\nrules: rules.yaml\nsentiment: {trained_runs['full']}\n", encoding="utf-8"
    )
    key = add_key(d / "keys.txt", "analyst")
    s = Server(
        [
            "--runs-dir",
            str(d / "runs"),
            "--api-keys-file",
            str(d / "keys.txt"),
            "--monitor",
            str(cfg),
        ],
        d / "studio.log",
        command=[TUNELAB, "studio"],
    )
    yield s, key, d
    s.stop()


@pytest.fixture(scope="module")
def page(studio):
    with chromium_page(SHOTS) as pg:
        yield pg


def _send(srv, key: str, posts: list[dict]) -> None:
    for i in range(0, len(posts), 200):
        status, body, _ = srv.request(
            "POST", "/v1/monitor/posts", {"posts": posts[i : i + 200]}, key=key
        )
        assert status == 200, body


def test_the_dashboard_updates_live_and_shows_the_alert_and_why(studio, page, tmp_path):
    srv, key, _ = studio
    _posts(tmp_path / "posts.jsonl", seed=5)
    posts = [json.loads(x) for x in (tmp_path / "posts.jsonl").read_text().splitlines()]
    for i, p in enumerate(posts):  # some posts name entities
        if i % 7 == 0:
            p["text"] += " acme" if i % 2 else " globex"
    before = [p for p in posts if p["time"] < 12 * 300]  # the quiet part, before the burst
    _send(srv, key, before)

    page.goto(srv.url + "/monitor")
    assert "/login" in page.url  # a page needs a session
    page.fill("#login-key", key)
    page.click("#login-submit")
    page.wait_for_url("**/monitor")
    page.wait_for_function(f"document.getElementById('stat-posts').textContent === '{len(before)}'")
    assert page.inner_text("#nav-monitor") == "Monitor"  # beside the studio's pages
    assert page.is_visible("#nav-train")
    assert page.is_visible("#mon-no-alerts")
    entities = page.inner_text("#mon-entities tbody")
    assert "Acme" in entities and "Globex" in entities

    # the rest of the stream arrives over HTTP: the page catches up without a reload
    page.evaluate("window.__same_page = true")
    _send(srv, key, [p for p in posts if p["time"] >= 12 * 300])
    page.wait_for_function(f"document.getElementById('stat-posts').textContent === '{len(posts)}'")
    page.wait_for_selector("#mon-alerts li[data-rule='negative-surge']")
    assert page.evaluate("window.__same_page") is True
    item = page.inner_text("#mon-alerts li[data-rule='negative-surge']")
    assert "negative_share > 0.5" in item and "critical" in item
    assert page.locator("#mon-negative tbody tr td:nth-child(4)").count() > 0  # posts, not "none"
    assert "13812345678" not in page.inner_text("#mon-negative")  # masked when stored
    bars = page.evaluate(
        "Chart.getChart('chart-volume').data.datasets[0].data.reduce((a, b) => a + b, 0)"
    )
    assert bars == len(posts)
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

    page.click("#lang-switch")
    page.wait_for_selector("#nav-monitor:has-text('舆情监测')")
    page.wait_for_function("document.getElementById('stat-posts').textContent !== '-'")
    assert page.inner_text("h1") == "舆情监测"
    page.wait_for_selector("#mon-alerts li[data-rule='negative-surge']")
    assert "告警" in page.inner_text("#mon-alerts") or "恢复" in page.inner_text("#mon-alerts")
    page.screenshot(path=str(SHOTS / "dashboard-zh.png"), full_page=True)
