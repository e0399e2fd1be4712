"""The assistant's chat page in a real headless browser (Debian's chromium via Playwright),
inside a real `tunelab studio --assistant` process: an answer with its source and confidence, a
follow-up that leans on the previous question, a hand-off that appears among the tickets, the
Chinese page. Screenshots go to tests/artifacts/assistant/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from browser_helpers import chromium_page, open_page
from serving_helpers import Server

SHOTS = Path(__file__).parent / "artifacts" / "assistant"
TUNELAB = str(Path(sys.executable).parent / "tunelab")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def studio(python_faq_kb, tmp_path_factory):
    d = tmp_path_factory.mktemp("assistant-browser")
    args = ["--runs-dir", str(d / "runs"), "--assistant", f"python={python_faq_kb}"]
    s = Server([*args, "--tickets", str(d / "tickets.db")], d / "studio.log", wait_ready=False,
               command=[TUNELAB, "studio"])  # fmt: skip
    s.wait("/readyz")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def page(studio):
    with chromium_page(SHOTS) as pg:
        yield pg


def _ask(page, text: str, n: int):
    page.fill("#as-input", text)
    page.click("#as-form button[type=submit]")
    page.wait_for_selector(f"#as-log .msg.bot:nth-of-type({2 * n})")
    return page.locator("#as-log .msg.bot").nth(n - 1)


def test_chat_answers_follows_up_and_hands_off_into_the_tickets(studio, page):
    open_page(page, studio.url + "/assistant")
    first = _ask(page, "does python have a switch statement", 1)
    assert "elif" in first.inner_text()
    assert "from: Why isn't there a switch or case statement in Python?" in first.inner_text()
    assert first.get_attribute("data-handoff") == "false"
    page.click("#as-new")  # a new conversation: the follow-up below leans on its own question
    _ask(page, "how can I turn my python script into an exe file", 1)
    follow = _ask(page, "and on windows?", 2)
    assert follow.get_attribute("data-handoff") == "false", follow.inner_text()
    assert "executable" in follow.inner_text()
    off = _ask(page, "tell me a joke", 3)
    assert off.get_attribute("data-handoff") == "true"
    assert "handed to a human" in off.inner_text()
    page.wait_for_selector("#as-tickets tbody tr")
    assert "tell me a joke" in page.inner_text("#as-tickets tbody")
    page.screenshot(path=str(SHOTS / "assistant.png"), full_page=True)


def test_the_page_in_chinese(studio, page):
    open_page(page, studio.url + "/assistant?lang=zh")
    assert "智能客服" in page.inner_text("h1, header")
    bot = _ask(page, "今天天气怎么样", 1)
    assert bot.get_attribute("data-handoff") == "true" and "人工客服" in bot.inner_text()
    page.screenshot(path=str(SHOTS / "assistant-zh.png"), full_page=True)
