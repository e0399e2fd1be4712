"""Raw text for continued pre-training: documents from a file or a folder, no labels.

- a ``.txt`` or ``.md`` file: each non-empty line is a document (the line-by-line convention of
  Hugging Face's ``run_mlm`` and LLaMA-Factory's ``pt`` stage);
- a ``.csv``, ``.tsv`` or ``.jsonl`` file: each row's ``text`` column (``column``) is one;
- a folder: every ``.txt`` and ``.md`` file under it (sorted, recursively) is one document.

A file that is not UTF-8 text (a binary file in the folder) is refused with its name; so is
input that holds no text at all.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")


def read_documents(path: str | Path, column: str = "text") -> list[str]:
    """The documents of ``path`` (see the module docstring), in order, blank ones dropped."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES)
        if not files:
            raise DataError(p, None, "no .txt or .md file in this folder")
        docs = [" ".join(_read_text(f).split()) for f in files]
    elif not p.exists():
        raise DataError(p, None, "file not found")
    elif p.suffix.lower() in TEXT_SUFFIXES:
        docs = [line.strip() for line in _read_text(p).splitlines()]
    else:
        from tunelab.data.readers import read_rows

        rows = read_rows(p, required=[column])
        docs = [str(r.values[column]).strip() for r in rows if r.values.get(column) is not None]
    docs = [d for d in docs if d]
    if not docs:
        raise DataError(p, None, "no text to train on (every document is empty)")
    return docs


def _read_text(f: Path) -> str:
    try:
        data = f.read_bytes()
    except OSError as e:
        raise DataError(f, None, f"cannot read: {e.strerror or e}") from None
    if b"\x00" in data[:8192]:
        raise DataError(f, None, "a binary file, not text (remove it or give a text file)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f, line, "not UTF-8 text") from None
