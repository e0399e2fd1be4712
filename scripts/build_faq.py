"""Extract the Python FAQ from Debian's ``python3.11-doc`` into ``data/faq/python_faq.jsonl``
(one FAQ entry per line: id, question, answer, category, source), reproducibly and offline
apart from the Debian mirror.

    python scripts/build_faq.py [--deb FILE] [--out data/faq/python_faq.jsonl]

Without ``--deb`` it runs ``apt-get download python3.11-doc`` into a temporary folder. The
reStructuredText sources (``usr/share/doc/python3.11/html/_sources/faq/*.rst.txt``) are parsed
here: a heading underlined with ``-`` (or ending with ``?``) is a question, the text up to the
next heading is its answer (markup turned into plain text, code blocks kept), and the nearest
heading that is not a question (or the page title) is its category. The Python documentation
is under the PSF licence; the file is built, not committed (``make data-faq``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = "usr/share/doc/python3.11/html/_sources/faq"
PAGES = ("general", "programming", "design", "library", "extending", "windows", "gui", "installed")
UNDERLINE = re.compile(r"^([=\-~^*+#])\1{2,}\s*$")


def plain(text: str) -> str:
    """reStructuredText inline markup to plain text."""
    text = re.sub(r"`([^`<]+?)\s*<[^>]+>`_+", r"\1", text)  # `label <url>`_
    text = re.sub(r":[a-z:]+:`~?([^`<]+?)(?:\s*<[^>]+>)?`", r"\1", text)  # :func:`x`, :ref:`a <b>`
    text = re.sub(r"``(.+?)``", r"\1", text)
    text = re.sub(r"`([^`]+)`_*", r"\1", text)
    text = re.sub(r"\*\*(.+?)\*\*|\*(.+?)\*", lambda m: m.group(1) or m.group(2), text)
    # a backslash escapes markup (\\*, \\`) in reStructuredText; a path's (C:\\Python) stays
    return re.sub(r"\\([\\*`_| ])", r"\1", text)


def parse(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.name.split(".")[0]
    headings = []  # (line index of the heading text, its text, its underline character)
    for i in range(1, len(lines)):
        if UNDERLINE.match(lines[i]) and lines[i - 1].strip() and not UNDERLINE.match(lines[i - 1]):
            headings.append((i - 1, lines[i - 1].strip(), lines[i][0]))
    entries, category = [], page
    for n, (i, title, mark) in enumerate(headings):
        end = headings[n + 1][0] if n + 1 < len(headings) else len(lines)
        if mark != "-" and not title.endswith("?"):
            category = plain(title)
            continue
        body = _body(lines[i + 2 : end])
        if not body:
            continue
        question = plain(title)
        digest = hashlib.sha1(f"{page}\n{question}".encode()).hexdigest()[:8]
        entries.append(
            {
                "id": f"{page}-{digest}",
                "question": question,
                "answer": body,
                "category": category,
                "source": f"{SOURCES}/{path.name}:{i + 1}",
            }
        )
    return entries


def _body(lines: list[str]) -> str:
    out: list[str] = []
    skip_indent = None  # inside a directive's indented block (.. only::, .. contents::, ...)
    for line in lines:
        if skip_indent is not None:
            if not line.strip() or line.startswith(" " * skip_indent):
                continue
            skip_indent = None
        stripped = line.strip()
        if stripped.startswith(".. ") and not stripped.startswith(".. code"):
            # a label (.. _x:), a comment or a directive: dropped with its indented block
            skip_indent = len(line) - len(line.lstrip()) + 1
            continue
        if stripped.startswith(".. code"):
            continue
        if UNDERLINE.match(line):  # an overline of the next page title, never an answer
            continue
        out.append(line.rstrip().replace("::", ":") if not line.startswith(" ") else line)
    text = plain("\n".join(out).strip())  # after joining: links and roles span lines
    return re.sub(r"\n{3,}", "\n\n", text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deb", help="python3.11-doc .deb (default: apt-get download it)")
    ap.add_argument("--out", default=str(ROOT / "data" / "faq" / "python_faq.jsonl"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deb = a.deb
        if not deb:
            subprocess.run(["apt-get", "download", "python3.11-doc"], cwd=tmp, check=True)
            deb = str(next(Path(tmp).glob("python3.11-doc_*.deb")))
        subprocess.run(["dpkg-deb", "-x", deb, f"{tmp}/x"], check=True)
        entries = [e for p in PAGES for e in parse(Path(tmp, "x", SOURCES, f"{p}.rst.txt"))]
    ids = [e["id"] for e in entries]
    if len(set(ids)) != len(ids):
        print("duplicate FAQ ids", file=sys.stderr)
        return 1
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    with tmp_out.open("w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    tmp_out.replace(out)
    print(f"{out}: {len(entries)} questions from {len(PAGES)} FAQ pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
