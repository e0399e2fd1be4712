"""`tunelab assistant` on the real Python FAQ (data/faq, built by `make data-faq` from Debian's
python3.11-doc) and the real MiniLM encoder: build, ask through the CLI (one JSON object per
line), hand-off to a ticket that is stored, listed, answered and joins a rebuilt KB, follow-up
questions, documents, Chinese questions, and bad input that names the file and line and never
leaves a KB half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.assistant import kb as kbmod
from tunelab.assistant.assistant import Assistant
from tunelab.assistant.calibrate import read_questions
from tunelab.assistant.encoder import Encoder
from tunelab.assistant.sources import read_docs, read_faq
from tunelab.errors import TunelabError
from tunelab.store.db import open_store
from tunelab.store.tickets import list_tickets

REPO = Path(__file__).resolve().parents[1]
FAQ = REPO / "data" / "faq" / "python_faq.jsonl"
EVAL = REPO / "data" / "assistant" / "python_faq_eval.jsonl"
ZH_FAQ = REPO / "data" / "assistant" / "zh_shop_faq.jsonl"
ZH_EVAL = REPO / "data" / "assistant" / "zh_shop_faq_eval.jsonl"
EN_SHOP_FAQ = REPO / "data" / "assistant" / "en_shop_faq.jsonl"
EN_SHOP_EVAL = REPO / "data" / "assistant" / "en_shop_faq_eval.jsonl"
TUNELAB = str(Path(sys.executable).parent / "tunelab")
pytestmark = pytest.mark.slow


def _dev(path: Path) -> list[tuple[str, str | None]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(r["question"], r["faq_id"]) for r in rows if r["split"] == "dev"]


@pytest.fixture(scope="module")
def encoder():
    return Encoder("minilm-l6")


@pytest.fixture(scope="module")
def kb_dir(python_faq_kb):
    return python_faq_kb


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [TUNELAB, "assistant", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_the_kb_describes_itself_and_its_calibration(kb_dir):
    info = json.loads((kb_dir / "kb.json").read_text())
    assert info["entries"] == 179 and info["faq_entries"] == 179 and info["passages"] == 0
    assert info["sources"][0]["kind"] == "faq" and len(info["sources"][0]["sha256"]) == 64
    cal = info["calibration"]
    assert 0 < cal["threshold"] < 1 and cal["target_precision"] == 0.9
    rep = cal["report"]
    assert rep["questions"] == 165 and rep["in_scope"] == 110  # the dev half
    assert rep["precision_answered"] >= 0.9  # the target, reached on the calibration set
    assert rep["retrieval"]["recall_at_5"] > 0.85
    for name in ("entries.jsonl", "keys.jsonl", "vectors.npy", "bm25"):
        assert (kb_dir / name).exists()
    assert not list(kb_dir.parent.glob(".python-faq.*"))  # no temporary folder left


def test_ask_answers_hands_off_and_the_ticket_is_listed_answered_and_learned(kb_dir, tmp_path):
    db = tmp_path / "tickets.db"
    questions = "does python have a switch statement\nwhat is the weather in Paris today\n"
    r = _cli("ask", "--kb", str(kb_dir), "--tickets", str(db), stdin=questions)
    assert r.returncode == 0, r.stderr
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert first["handoff"] is False
    assert first["matched_question"] == "Why isn't there a switch or case statement in Python?"
    assert "dictionary" in first["answer"] and first["score"] >= first["threshold"]
    assert second["handoff"] is True and second["matched_question"] is None
    assert second["score"] < second["threshold"] and second["ticket"] == 1
    # the hand-off is a ticket, with the conversation and the candidates
    listed = _cli("tickets", "--kb", str(kb_dir), "--tickets", str(db), "--status", "open")
    (ticket,) = (json.loads(line) for line in listed.stdout.splitlines())
    assert ticket["question"] == "what is the weather in Paris today"
    assert len(ticket["candidates"]) == 5 and ticket["status"] == "open"
    done = _cli("tickets", "--kb", str(kb_dir), "--tickets", str(db), "--answer", "1",
                "Ask the weather service at weather.example.org.")  # fmt: skip
    assert done.returncode == 0, done.stderr
    # rebuilt with the answered ticket, the KB answers that question itself
    rebuilt = tmp_path / "kb2"
    b = _cli("build", "--faq", str(FAQ), "--tickets", str(db), "--output", str(rebuilt))
    assert b.returncode == 0, b.stderr
    assert json.loads(b.stdout)["entries"] == 180
    again = _cli("ask", "--kb", str(rebuilt), stdin="what is the weather in Paris today\n")
    out = json.loads(again.stdout)
    assert out["handoff"] is False and out["id"] == "ticket-1", out
    assert out["answer"] == "Ask the weather service at weather.example.org."


def test_personal_data_in_a_handed_off_question_is_masked(kb_dir, encoder, tmp_path):
    kb = kbmod.KnowledgeBase.load(kb_dir, encoder=encoder)
    engine = open_store(str(tmp_path / "t.db"))
    bot = Assistant(kb, engine, "python-faq")
    r = bot.ask("my card 4111 1111 1111 1111 was charged twice, call me on 13812345678", "s")
    assert r["handoff"] is True
    (t,) = list_tickets(engine)
    assert "4111" not in t["question"] and "13812345678" not in t["question"]
    assert "4111" not in json.dumps(t["conversation"])


def test_a_follow_up_uses_the_previous_question(kb_dir, encoder):
    bot = Assistant(kbmod.KnowledgeBase.load(kb_dir, encoder=encoder))
    bot.ask("how can I turn my python script into an exe file", "s1")
    follow = bot.ask("and on windows?", "s1")
    alone = bot.ask("and on windows?", "other")
    assert follow["query"] == "how can I turn my python script into an exe file and on windows?"
    assert follow["handoff"] is False and "executable" in follow["matched_question"]
    assert alone["handoff"] is True  # without the conversation, nothing to answer


def _docs_kb(encoder, tmp_path):
    """Three passages from a markdown and an HTML file, and their KB."""
    docs = tmp_path / "docs"
    (docs / "policies").mkdir(parents=True)
    (docs / "returns.md").write_text(
        "# Returns\n\nYou can return any item within 30 days of delivery for a full refund. "
        "Items must be unused and in their original packaging.\n\n# Shipping\n\nOrders over "
        "50 euros ship free. Standard delivery takes 3 to 5 working days.\n",
        encoding="utf-8",
    )
    (docs / "policies" / "warranty.html").write_text(
        "<html><head><style>p{}</style></head><body><h1>Warranty</h1><p>Every laptop has a "
        "two-year warranty covering hardware faults.</p><script>var x;</script></body></html>",
        encoding="utf-8",
    )
    passages = read_docs(docs)
    kb = kbmod.build(
        passages, tmp_path / "kb", "minilm-l6", [], encoder=encoder, log=lambda m: None
    )
    return passages, kb


def test_documents_are_cut_into_passages_and_answered_with_their_source(encoder, tmp_path):
    passages, kb = _docs_kb(encoder, tmp_path)
    assert [p.id for p in passages] == ["policies/warranty.html#1", "returns.md#1", "returns.md#2"]
    assert passages[1].question == "returns: Returns" and "30 days" in passages[1].answer
    assert "var x" not in passages[0].answer and "p{}" not in passages[0].answer
    top = kb.search("how long does delivery take")[0]
    assert kb.entries[top.entry].id == "returns.md#2"


def test_a_document_hit_is_answered_by_an_extractive_qa_run(encoder, runs, tmp_path):
    """With ``--qa-model`` a passage hit is answered by a span of that passage, which comes
    back with its source (the QA run is a tiny one: the test checks the span is the passage's)."""
    import tunelab

    _, kb = _docs_kb(encoder, tmp_path)
    kb.calibration.threshold = 0.0  # answer everything: this test is about the answer
    bot = Assistant(kb, None, "docs", qa_model=tunelab.load(runs["qa"]))
    out = bot.ask("how long does delivery take")
    assert not out["handoff"] and out["id"] == "returns.md#2"
    assert "returns.md:" in out["source"] and "3 to 5 working days" in out["passage"]
    assert out["answer"] and out["answer"] in out["passage"]


def test_chinese_questions_find_their_entry(encoder, tmp_path):
    """MiniLM cannot read Chinese; jieba words and character bigrams in BM25 carry it (the
    Gemma encoder is measured in bench/assistant.py)."""
    entries = read_faq(ZH_FAQ)
    kb = kbmod.build(entries, tmp_path / "kb", "minilm-l6", [], encoder=encoder, log=lambda m: None)
    index = {e.id: i for i, e in enumerate(kb.entries)}
    dev = [(q, f) for q, f in _dev(ZH_EVAL) if f]
    top5 = sum(index[f] in [c.entry for c in kb.search(q, mode="bm25")[:5]] for q, f in dev)
    assert top5 / len(dev) >= 0.6, top5
    bot = Assistant(kb)
    r = bot.ask("今天北京天气怎么样")
    assert r["handoff"] is True and "人工客服" in r["answer"]


def test_decoder_rewrites_are_kept_only_when_they_find_their_own_entry_again(encoder):
    """Round-trip consistency: a rewrite that the untuned retriever takes to another entry
    (a small decoder drifted) never becomes a training pair for the wrong entry."""
    from tunelab.assistant.paraphrase import round_trip
    from tunelab.assistant.sources import Entry

    faq = [
        Entry("s2n", "How do I convert a string to a number?", "Use int('144') or float()."),
        Entry("n2s", "How do I convert a number to a string?", "Use str(144) or an f-string."),
        Entry("exe", "How do I make a Python script executable?", "Add a #! line; chmod +x."),
    ]
    rewrites = {
        0: ["turn the text '42' into an integer", "how can I make my .py file run as a command"],
        2: ["run a python file directly like a program on linux"],
    }
    kept = round_trip(rewrites, faq, encoder)
    assert kept == {
        0: ["turn the text '42' into an integer"],
        2: ["run a python file directly like a program on linux"],
    }


def test_no_evaluation_question_is_part_of_the_faq_it_is_judged_on():
    for faq, ev in ((FAQ, EVAL), (ZH_FAQ, ZH_EVAL), (EN_SHOP_FAQ, EN_SHOP_EVAL)):
        known = {t.strip().lower() for e in read_faq(faq) for t in (e.question, *e.variants)}
        rows = read_questions(str(ev), {e.id for e in read_faq(faq)})
        assert rows and not [q for q, _ in rows if q.strip().lower() in known]


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("faq.csv", "question,reply\nhi,hello\n", r"faq.csv:1: no 'answer' column"),
        ("faq.csv", "question,answer\nhi,hello\nbye,\n", r"faq.csv:3: field 'answer' is empty"),
        (
            "faq.jsonl",
            '{"id": "a", "question": "q1", "answer": "x"}\n{"id": "a", "question": "q2", '
            '"answer": "y"}\n',
            r"faq.jsonl:2: id 'a' is used twice \(first at line 1\)",
        ),
        ("faq.jsonl", '{"question": "q1", "answer": "x"}\n{"question": \n', r"faq.jsonl:2: not"),
    ],
)
def test_a_bad_faq_is_one_line_naming_file_and_line(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(TunelabError, match=message) as e:
        read_faq(f)
    assert "\n" not in str(e.value)


def test_bad_input_never_half_overwrites_an_existing_kb(kb_dir, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("fine text", encoding="utf-8")
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    r = _cli("build", "--docs", str(docs), "--output", str(kb_dir), "--overwrite")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "logo.png: not a document the assistant reads" in r.stderr
    (docs / "logo.png").unlink()
    (docs / "b.txt").write_bytes(b"text\x00\x01binary")
    r = _cli("build", "--docs", str(docs), "--output", str(kb_dir), "--overwrite")
    assert "b.txt: a binary file, not text" in r.stderr
    r = _cli("build", "--faq", str(FAQ), "--output", str(kb_dir))  # no --overwrite
    assert r.returncode != 0 and "already exists (pass --overwrite" in r.stderr
    assert json.loads((kb_dir / "kb.json").read_text())["entries"] == 179  # untouched
    r = _cli("ask", "--kb", str(tmp_path), stdin="hi\n")
    assert r.returncode != 0 and "not a knowledge base (no kb.json)" in r.stderr


def test_the_http_endpoint_keeps_sessions_and_refuses_bad_input(kb_dir, tmp_path):
    from serving_helpers import Server

    db = tmp_path / "tickets.db"
    s = Server(["--assistant", f"python={kb_dir}", "--tickets", str(db)], tmp_path / "serve.log")
    try:
        code, first, _ = s.request(
            "POST",
            "/v1/assistant/python/chat",
            {"message": "how can I turn my python script into an exe file"},
        )
        assert code == 200, first
        session = first["session"]
        code, follow, _ = s.request(
            "POST", "/v1/assistant/python/chat", {"message": "and on windows?", "session": session}
        )
        assert code == 200 and follow["session"] == session
        assert follow["handoff"] is False and "executable" in follow["matched_question"]
        code, off, _ = s.request("POST", "/v1/assistant/python/chat", {"message": "tell me a joke"})
        assert code == 200 and off["handoff"] is True and off["ticket"] >= 1
        code, listed, _ = s.request("GET", "/v1/assistant/python/tickets?status=open")
        assert code == 200 and [t["question"] for t in listed][-1] == "tell me a joke"
        assert s.request("POST", "/v1/assistant/python/chat", {"message": "  "})[0] == 422
        assert s.request("POST", "/v1/assistant/nope/chat", {"message": "hi"})[0] == 404
        assert s.request("POST", "/v1/assistant/python/chat", {"text": "hi"})[0] == 422
        code, again, _ = s.request("POST", "/v1/assistant/python/chat", {"message": "hello?"})
        assert code == 200  # still serving after the bad requests
    finally:
        s.stop()


def test_answer_faq_is_a_task_function_backed_by_a_registered_kb(kb_dir, tmp_path, monkeypatch):
    from tunelab.assistant.function import answer_faq
    from tunelab.cli import main
    from tunelab.functions.catalog import get_function

    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "models.yaml"))
    with pytest.raises(TunelabError, match="no model registered for 'answer_faq'.*assistant build"):
        answer_faq("does python have a switch statement")
    assert main(["register", "answer_faq", str(tmp_path)]) != 0  # not a KB: refused
    assert main(["register", "answer_faq", str(kb_dir)]) == 0
    r = answer_faq("does python have a switch statement")
    assert r.handoff is False and r.matched_question.startswith("Why isn't there a switch")
    many = answer_faq(["does python have a switch statement", "tell me a joke"])
    assert [a.handoff for a in many] == [False, True] and many[1].ticket is not None
    assert get_function("answer_faq").route_examples is not None  # the router learns it
