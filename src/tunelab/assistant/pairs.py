"""Training pairs for the retriever, made from the FAQ itself (``tunelab assistant tune``):

- each variant with its question (the user-given paraphrases);
- the question, and each variant, with the opening of its answer (question -> answer);
- generated paraphrases: EDA edits of the question (synonyms from WordNet or the Cilin
  thesaurus, a word dropped, two words swapped; ``tunelab.data.augment``) with the question and
  with the answer;
- optionally, rewrites of the question by a small decoder (``paraphrase``), with both too.

Entries are split into training and validation by a seeded shuffle (``validation_share``), so
validation measures entries the retriever never saw. Questions of an evaluation file
(``exclude``) never enter a pair: a paraphrase that happens to equal one is dropped.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from tunelab.assistant.kb import ANSWER_KEY_CHARS
from tunelab.assistant.sources import Entry


def make_pairs(
    entries: list[Entry],
    paraphrases: int = 3,
    validation_share: float = 0.15,
    seed: int = 42,
    exclude: set[str] | None = None,
    rewrites: dict[int, list[str]] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """``rewrites``: decoder paraphrases by index into the FAQ entries (``faq_entries``)."""
    from tunelab.data.augment import augment_texts

    faq = faq_entries(entries)
    banned = {q.strip().lower() for q in (exclude or set())}
    order = list(range(len(faq)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(validation_share * len(faq))) if len(faq) >= 10 else 0
    held = set(order[:n_val])
    generated: dict[int, list[str]] = {}
    if paraphrases:
        for i, text in augment_texts(
            [e.question for e in faq], copies=paraphrases, alpha=0.15, seed=seed
        ):
            generated.setdefault(i, []).append(text)
    out: dict[str, list[tuple[str, str]]] = {"train": [], "validation": []}
    for i, e in enumerate(faq):
        answer = e.answer[:ANSWER_KEY_CHARS]
        pairs = [(v, e.question) for v in e.variants]
        pairs += [(q, answer) for q in (e.question, *e.variants)]
        for g in dict.fromkeys(generated.get(i, []) + (rewrites or {}).get(i, [])):
            pairs += [(g, e.question), (g, answer)]
        keep = [(a, b) for a, b in pairs if a.strip().lower() not in banned and a != b]
        out["validation" if i in held else "train"] += keep
    return out


def faq_entries(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.kind == "faq"]


def write_pairs(pairs: list[tuple[str, str]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "text_pair"])
        w.writerows(pairs)
    return path
