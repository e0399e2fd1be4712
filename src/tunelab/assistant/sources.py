"""What a knowledge base is built from: an FAQ file and a folder of documents.

FAQ: CSV, TSV or JSONL with ``question`` and ``answer``; optional ``id`` (else ``faq-<line>``),
``category`` and ``variants`` (other phrasings of the question: a JSON list, or in CSV/TSV one
cell with the variants separated by ``|``). Documents: ``.txt``, ``.md`` and ``.html`` files
(recursively), cut into passages of about ``PASSAGE_CHARS`` characters on paragraph and
sentence boundaries. Every mistake is one line naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from tunelab.errors import TunelabError

PASSAGE_CHARS = 600  # about 120 English words, or 600 Chinese characters
DOC_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")


@dataclass
class Entry:
    """One answerable unit: an FAQ entry (``kind == "faq"``) or a document passage."""

    id: str
    question: str  # the FAQ question; a passage's title (file and heading)
    answer: str  # the FAQ answer; the passage's text
    kind: str = "faq"
    category: str = ""
    variants: list[str] = field(default_factory=list)
    source: str = ""  # file:line

    def keys(self) -> list[str]:
        """The texts a question is matched against: the question and its variants; a
        passage's title with its text."""
        if self.kind == "faq":
            return [self.question, *self.variants]
        return [f"{self.question}\n{self.answer}"]

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "question": self.question,
            "answer": self.answer,
            "category": self.category,
            "variants": self.variants,
            "source": self.source,
        }


def read_faq(path: str | Path) -> list[Entry]:
    p = Path(path)
    if not p.is_file():
        raise TunelabError(f"{p}: FAQ file not found")
    rows = list(_rows(p))
    if not rows:
        raise TunelabError(f"{p}: the FAQ file has no entries")
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        where = f"{p}:{line}"
        q, a = _cell(row, "question", where), _cell(row, "answer", where)
        eid = str(row.get("id") or "").strip() or f"faq-{line}"
        if eid in seen:
            raise TunelabError(f"{where}: id {eid!r} is used twice (first at line {seen[eid]})")
        seen[eid] = line
        entries.append(
            Entry(
                id=eid,
                question=q,
                answer=a,
                category=str(row.get("category") or "").strip(),
                variants=_variants(row.get("variants"), where),
                source=where,
            )
        )
    return entries


def _rows(p: Path):
    suffix = p.suffix.lower()
    try:
        with p.open(encoding="utf-8", newline="") as f:
            if suffix in (".jsonl", ".json"):
                for n, text in enumerate(f, 1):
                    if not text.strip():
                        continue
                    try:
                        row = json.loads(text)
                    except json.JSONDecodeError as e:
                        raise TunelabError(f"{p}:{n}: not a JSON object ({e.msg})") from None
                    if not isinstance(row, dict):
                        raise TunelabError(f"{p}:{n}: not a JSON object")
                    yield n, row
                return
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            missing = [c for c in ("question", "answer") if c not in (reader.fieldnames or [])]
            if missing:
                raise TunelabError(
                    f"{p}:1: no '{missing[0]}' column (the header has: "
                    f"{', '.join(reader.fieldnames or []) or 'nothing'})"
                )
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError:
        raise TunelabError(f"{p}: not UTF-8 text") from None


def _cell(row: dict, name: str, where: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else "empty"
        raise TunelabError(f"{where}: field '{name}' is {got}")
    return value.strip()


def _variants(value, where: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [v for v in value.split("|")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TunelabError(f"{where}: field 'variants' must be a list of texts")
    return [v.strip() for v in value if v.strip()]


# --------------------------------------------------------------------------------- documents
class _Text(HTMLParser):
    """The visible text of an HTML page, a blank line between blocks."""

    BLOCKS = {"p", "div", "li", "br", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "section"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("script", "style", "head"):
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag) -> None:
        if tag in ("script", "style", "head"):
            self.hidden = max(0, self.hidden - 1)

    def handle_data(self, data) -> None:
        if not self.hidden:
            self.parts.append(data)


def read_docs(folder: str | Path) -> list[Entry]:
    root = Path(folder)
    if not root.is_dir():
        raise TunelabError(f"{root}: documents folder not found")
    files = sorted(f for f in root.rglob("*") if f.is_file() and not f.name.startswith("."))
    out: list[Entry] = []
    for f in files:
        if f.suffix.lower() not in DOC_SUFFIXES:
            raise TunelabError(
                f"{f}: not a document the assistant reads (use {', '.join(DOC_SUFFIXES)})"
            )
        raw = f.read_bytes()
        if b"\x00" in raw[:8192]:
            raise TunelabError(f"{f}: a binary file, not text")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise TunelabError(f"{f}:{line}: not UTF-8 text") from None
        if f.suffix.lower() in (".html", ".htm"):
            parser = _Text()
            parser.feed(text)
            text = "".join(parser.parts)
        rel = f.relative_to(root).as_posix()
        for i, (title, passage, line) in enumerate(chunk(text, f.stem)):
            out.append(
                Entry(
                    id=f"{rel}#{i + 1}",
                    question=title,
                    answer=passage,
                    kind="passage",
                    source=f"{f}:{line}",
                )
            )
    if not out:
        raise TunelabError(f"{root}: no text in the documents folder")
    return out


_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_SENTENCE = re.compile(r"(?<=[.!?。！？；])\s*")


def chunk(text: str, title: str, size: int = PASSAGE_CHARS) -> list[tuple[str, str, int]]:
    """(title, passage, first line) pieces of about ``size`` characters: paragraphs joined
    while they fit, a long paragraph cut between sentences; a Markdown heading starts a new
    passage and becomes its title."""
    pieces: list[tuple[str, str, int]] = []
    heading, buf, start = title, "", 1
    line = 1
    for para in re.split(r"\n\s*\n", text):
        n_lines = para.count("\n") + 2
        para_line = line
        line += n_lines
        stripped = " ".join(para.split())
        if not stripped:
            continue
        m = _HEADING.match(para.strip())
        if m:
            if buf:
                pieces.append((heading, buf, start))
                buf = ""
            heading = f"{title}: {m.group(2).strip()}"
            continue
        for sent in _split_long(stripped, size):
            if buf and len(buf) + len(sent) + 1 > size:
                pieces.append((heading, buf, start))
                buf = ""
            if not buf:
                start = para_line
            buf = f"{buf} {sent}".strip() if buf else sent
    if buf:
        pieces.append((heading, buf, start))
    return pieces


def _split_long(para: str, size: int) -> list[str]:
    if len(para) <= size:
        return [para]
    out, buf = [], ""
    for s in (s for s in _SENTENCE.split(para) if s):
        if buf and len(buf) + len(s) + 1 > size:
            out.append(buf)
            buf = ""
        buf = f"{buf} {s}".strip() if buf else s
        while len(buf) > size:  # one sentence longer than a passage
            out.append(buf[:size])
            buf = buf[size:]
    if buf:
        out.append(buf)
    return out
