"""``tunelab assistant``: build a knowledge base, ask it (stdin, one question per line), chat with
it, and list or answer the tickets of its hand-offs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  make data-faq     # the Python FAQ from Debian's python3.11-doc -> data/faq/python_faq.jsonl
  tunelab assistant build --faq data/faq/python_faq.jsonl --output runs/kb-python
  echo "how do I make an exe from my script" | tunelab assistant ask --kb runs/kb-python
  tunelab assistant chat --kb runs/kb-python            # a conversation, follow-ups included
  tunelab assistant tickets --kb runs/kb-python         # hand-offs waiting for a human
  tunelab assistant tickets --kb runs/kb-python --answer 3 "Use PyInstaller ..."
  tunelab assistant build --faq data/faq/python_faq.jsonl --output runs/kb-python \\
      --tickets runs/kb-python.tickets.db --overwrite   # answered tickets join the FAQ
  tunelab assistant build --faq data/assistant/zh_shop_faq.jsonl --model gemma3-270m \\
      --output runs/kb-shop                             # Chinese: BM25 on jieba words + Gemma
"""


def add_assistant(sub) -> None:
    a = sub.add_parser(
        "assistant",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="customer-service assistant: FAQ and document retrieval, hand-off to a human",
        description="Answer questions from an FAQ file and a folder of documents: BM25 and "
        "sentence embeddings fused, a confidence calibrated on a validation set (or, without "
        "one, on tunelab's reference questions for the encoder) to a target precision, and "
        "below it a hand-off: the "
        "conversation becomes a ticket in a database (personal data masked).",
        epilog=EPILOG,
    )
    verbs = a.add_subparsers(dest="verb", metavar="VERB", required=True)
    b = verbs.add_parser("build", help="build a knowledge base folder")
    b.add_argument("--faq", help="CSV/TSV/JSONL with question, answer (id, category, variants)")
    b.add_argument("--docs", help="a folder of .txt/.md/.html documents, cut into passages")
    b.add_argument("--output", required=True, help="the KB folder to write")
    b.add_argument(
        "--model",
        default="minilm-l6",
        help="sentence encoder: an alias, a model folder or a retriever run (default minilm-l6; "
        "gemma3-270m reads Chinese)",
    )
    b.add_argument(
        "--validation",
        help="questions to calibrate the hand-off on (JSONL/CSV: question, faq_id; no faq_id = "
        "should be handed off); default: tunelab's reference questions for the encoder "
        "(minilm-l6: the Python and English shop FAQs' dev halves; gemma3-270m: the Chinese shop "
        "FAQ's), the weights measured on questions made from the FAQ itself",
    )
    b.add_argument(
        "--target-precision",
        type=float,
        default=0.9,
        help="of the questions answered, the share that must be right (default 0.9)",
    )
    b.add_argument(
        "--mix",
        default="auto",
        help="a fine-tuned retriever run's share in weight space, averaged with its base model "
        "(WiSE-FT): 0-1, or auto (default: 1, 0.75, 0.5 or 0.25, measured on the calibration "
        "questions)",
    )
    b.add_argument("--tickets", help="a tickets database: its answered tickets join the FAQ")
    b.add_argument("--overwrite", action="store_true", help="replace an existing KB")
    for verb, what in (
        ("ask", "answer questions from stdin, one per line; one JSON object per answer"),
        ("chat", "a conversation in the terminal (follow-ups use the context)"),
    ):
        p = verbs.add_parser(verb, help=what)
        p.add_argument("--kb", required=True, help="a knowledge base folder")
        p.add_argument("--tickets", help="database for hand-offs (default: KB.tickets.db)")
        p.add_argument("--session", default=None, help="one conversation for every line (ask)")
        p.add_argument("--qa-model", help="an extractive QA run that answers from passages")
    tu = verbs.add_parser(
        "tune",
        help="fine-tune the retriever on the FAQ (contrastive; a sentence-embedding run)",
        description="Make pairs from the FAQ (variant -> question, question -> answer, EDA "
        "paraphrases -> both; with --paraphrase-model, a decoder's rewrites of each question "
        "that the untuned retriever maps back to their own entry) and train a "
        "sentence-embedding run on them with the multiple-negatives ranking loss; then "
        "`assistant build --model OUTPUT`, which measures how much of the tuning to keep.",
    )
    tu.add_argument("--faq", required=True, help="the FAQ file (as for build)")
    tu.add_argument("--output", required=True, help="the run folder to write")
    tu.add_argument("--model", default="minilm-l6", help="the encoder to start from")
    tu.add_argument("--method", default="full", help="fine-tuning method (default full)")
    tu.add_argument("--epochs", type=float, default=3.0)
    tu.add_argument("--batch-size", type=int, default=32)
    tu.add_argument("--learning-rate", type=float, default=None)
    tu.add_argument("--max-length", type=int, default=128)
    tu.add_argument("--paraphrases", type=int, default=3, help="EDA paraphrases per question")
    tu.add_argument(
        "--exclude",
        help="an evaluation file (question column): its questions never enter a training pair",
    )
    tu.add_argument(
        "--paraphrase-model",
        help="a decoder that also rewrites each question in other words (smollm2-135m for "
        "English, gemma3-270m for Chinese); what it wrote is kept in OUTPUT.pairs/",
    )
    tu.add_argument(
        "--rewrites", type=int, default=4, help="rewrites sampled per question (default 4)"
    )
    tu.add_argument("--seed", type=int, default=42)
    tu.add_argument("--overwrite", action="store_true")
    t = verbs.add_parser("tickets", help="list the hand-offs, or answer one")
    t.add_argument("--kb", required=True, help="a knowledge base folder")
    t.add_argument("--tickets", help="database for hand-offs (default: KB.tickets.db)")
    t.add_argument("--status", choices=("open", "answered"), help="only these")
    t.add_argument("--answer", nargs=2, metavar=("TICKET", "TEXT"), help="answer a ticket")
    a.set_defaults(func=cmd_assistant)


def tickets_db(kb: str, given: str | None) -> str:
    return given or str(Path(kb).resolve().with_name(Path(kb).resolve().name + ".tickets.db"))


def cmd_assistant(a: argparse.Namespace) -> int:
    if a.verb == "build":
        return _build(a)
    if a.verb == "tickets":
        return _tickets(a)
    if a.verb == "tune":
        return _tune(a)
    from tunelab.assistant.assistant import Assistant
    from tunelab.assistant.kb import KnowledgeBase
    from tunelab.store.db import open_store

    kb = KnowledgeBase.load(a.kb)
    qa = None
    if a.qa_model:
        import tunelab

        qa = tunelab.load(a.qa_model)
    bot = Assistant(kb, open_store(tickets_db(a.kb, a.tickets)), Path(a.kb).name, qa)
    if a.verb == "ask":
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(bot.ask(line, a.session), ensure_ascii=False), flush=True)
        return 0
    import uuid

    session = a.session or uuid.uuid4().hex
    print("ask a question (an empty line or Ctrl-D ends)", file=sys.stderr)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not line.strip():
            break
        r = bot.ask(line, session)
        print(f"bot> {r['answer']}")
        where = "hand-off" if r["handoff"] else f"from: {r['matched_question']}"
        print(f"     ({where}; confidence {r['score']:.2f})", file=sys.stderr)
    return 0


def _build(a: argparse.Namespace) -> int:
    from tunelab.assistant import kb as kbmod
    from tunelab.assistant.calibrate import read_questions
    from tunelab.assistant.sources import Entry, read_docs, read_faq
    from tunelab.errors import TunelabError

    if not a.faq and not a.docs:
        raise TunelabError("give --faq, --docs or both")
    if not 0 < a.target_precision <= 1:
        raise TunelabError(f"--target-precision {a.target_precision} must be in (0, 1]")
    mix = None
    if a.mix != "auto":
        try:
            mix = float(a.mix)
        except ValueError:
            raise TunelabError(f"--mix {a.mix!r}: give a number from 0 to 1, or auto") from None
        if not 0 <= mix <= 1:
            raise TunelabError(f"--mix {a.mix}: must be from 0 to 1")
    entries: list[Entry] = []
    sources = []
    if a.faq:
        faq = read_faq(a.faq)
        entries += faq
        sources.append(kbmod.file_record(a.faq, "faq", len(faq)))
    if a.tickets:
        from tunelab.store.db import open_store
        from tunelab.store.tickets import list_tickets

        answered = list_tickets(open_store(a.tickets), status="answered")
        entries += [
            Entry(
                id=f"ticket-{t['id']}",
                question=t["question"],
                answer=t["answer"],
                category="tickets",
                source=f"{a.tickets}#ticket-{t['id']}",
            )
            for t in answered
        ]
        sources.append(
            {"path": str(Path(a.tickets).resolve()), "kind": "tickets", "entries": len(answered)}
        )
    if a.docs:
        docs = read_docs(a.docs)
        entries += docs
        sources.append(kbmod.file_record(a.docs, "docs", len(docs)))
    validation = None
    if a.validation:
        validation = read_questions(a.validation, {e.id for e in entries})
    kb = kbmod.build(
        entries,
        a.output,
        a.model,
        sources,
        validation=validation,
        validation_source=a.validation or "",
        target_precision=a.target_precision,
        overwrite=a.overwrite,
        log=lambda m: print(m, file=sys.stderr),
        mix=mix,
    )
    cal = kb.info["calibration"]
    print(
        json.dumps(
            {
                "kb": str(Path(a.output).resolve()),
                "entries": kb.info["entries"],
                "keys": kb.info["keys"],
                "index": kb.info["index"],
                "threshold": round(cal["threshold"], 4),
                "encoder_mix": kb.info.get("encoder", {}).get("mix"),
                "calibration": cal["report"],
            },
            ensure_ascii=False,
        )
    )
    return 0


def _tune(a: argparse.Namespace) -> int:
    from tunelab import config as C
    from tunelab.assistant.pairs import faq_entries, make_pairs, write_pairs
    from tunelab.assistant.sources import read_faq
    from tunelab.training.pipeline import run_training

    entries = read_faq(a.faq)
    exclude: set[str] = set()
    if a.exclude:
        from tunelab.assistant.calibrate import read_questions

        exclude = {q for q, _ in read_questions(a.exclude, {e.id for e in entries})}
    folder = Path(a.output).resolve().with_name(Path(a.output).name + ".pairs")
    rewrites = None
    if a.paraphrase_model:
        rewrites = _rewrites(faq_entries(entries), a, folder)
    pairs = make_pairs(entries, a.paraphrases, seed=a.seed, exclude=exclude, rewrites=rewrites)
    overrides = {
        "task": "sentence-embedding",
        "model": a.model,
        "method": a.method,
        "train": str(write_pairs(pairs["train"], folder / "train.csv")),
        "output_dir": a.output,
        "epochs": a.epochs,
        "batch_size": a.batch_size,
        "max_length": a.max_length,
        "seed": a.seed,
        "overwrite": a.overwrite,
        "report_to": "none",
        "text_column": "text",
        "label_column": "text_pair",
    }
    if pairs["validation"]:
        overrides["validation"] = str(write_pairs(pairs["validation"], folder / "validation.csv"))
    if a.learning_rate is not None:
        overrides["learning_rate"] = a.learning_rate
    print(
        f"pairs: {len(pairs['train']):,} to train, {len(pairs['validation']):,} to validate "
        f"({folder})",
        file=sys.stderr,
    )
    run_dir, metrics = run_training(C.build(overrides))
    print(json.dumps({"run": str(run_dir), "validation": metrics.get("validation")}))
    return 0


def _rewrites(faq: list, a: argparse.Namespace, folder: Path) -> dict[int, list[str]]:
    """The decoder's rewrites of each question, written to FOLDER/paraphrases.jsonl."""
    from tunelab.assistant.encoder import Encoder
    from tunelab.assistant.paraphrase import paraphrase, round_trip
    from tunelab.errors import TunelabError

    if a.rewrites < 1:
        raise TunelabError(f"--rewrites {a.rewrites}: must be at least 1")
    got = paraphrase(
        [(e.question, e.answer) for e in faq],
        a.paraphrase_model,
        copies=a.rewrites,
        seed=a.seed,
        log=lambda m: print(m, file=sys.stderr),
    )
    sampled = sum(len(v) for v in got.values())
    got = round_trip(got, faq, Encoder(a.model))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "paraphrases.jsonl").open("w", encoding="utf-8") as f:
        for i, e in enumerate(faq):
            row = {"id": e.id, "question": e.question, "rewrites": got.get(i, [])}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    kept = sum(len(v) for v in got.values())
    print(
        f"rewrites: {a.rewrites * len(faq):,} sampled, {sampled:,} well-formed, {kept:,} found "
        "their own entry first again (kept)",
        file=sys.stderr,
    )
    return got


def _tickets(a: argparse.Namespace) -> int:
    from tunelab.store.db import open_store
    from tunelab.store.tickets import answer_ticket, list_tickets

    engine = open_store(tickets_db(a.kb, a.tickets))
    if a.answer:
        from tunelab.errors import TunelabError

        if not a.answer[0].isdigit():
            raise TunelabError(f"--answer: {a.answer[0]!r} is not a ticket number")
        answer_ticket(engine, int(a.answer[0]), a.answer[1])
        print(json.dumps({"ticket": int(a.answer[0]), "status": "answered"}))
        return 0
    for t in list_tickets(engine, a.status):
        print(json.dumps(t, ensure_ascii=False))
    return 0
