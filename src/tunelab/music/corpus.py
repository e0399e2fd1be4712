"""Symbolic music as melodies: pieces read from the corpus that ships inside music21 (Bach
chorales, Essen folk songs, O'Neill's and Ryan's collections) or from a folder of MIDI, MusicXML,
ABC or Humdrum files, each reduced to one monophonic line quantised to sixteenth notes.

music21 parses slowly (an Essen opus of 313 tunes takes 10 s), so ``tunelab music prepare``
parses once, in parallel, and keeps the result as JSON lines (:func:`write_pieces`). An ABC
collection is split into its tunes before parsing, so a limit parses only what it keeps.
The melody of a score is its first part (the soprano of a chorale, the tune of a folk song);
where it holds chords, their top note; notes are cut where the next one starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import DataError, TunelabError

STEPS_PER_QUARTER = 4  # sixteenth notes
CORPORA = {  # name -> music21 corpus folder
    "bach": "bach",
    "essen": "essenFolksong",
    "oneill": "oneills1850",
    "ryans": "ryansMammoth",
}
SUFFIXES = {".mid", ".midi", ".xml", ".musicxml", ".mxl", ".abc", ".krn"}
_X_LINE = re.compile(r"^X:\s*\d+", re.MULTILINE)


@dataclass
class Piece:
    """One melody: ``notes`` are (MIDI pitch, onset step, duration in steps), onsets rising,
    never overlapping; a step is a sixteenth note."""

    id: str
    source: str
    title: str = ""
    tonic: int = 0  # pitch class of the key's tonic (C = 0)
    mode: str = "major"  # major | minor | other
    beats: int = 4  # time signature
    beat_type: int = 4
    notes: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def bar_steps(self) -> int:
        return self.beats * STEPS_PER_QUARTER * 4 // self.beat_type

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Piece:
        d = dict(d)
        d["notes"] = [tuple(n) for n in d.get("notes", [])]
        return cls(**d)


def corpus_files(name: str) -> list[Path]:
    """The music21 corpus files of collection ``name`` (see :data:`CORPORA`)."""
    from music21 import corpus

    folder = CORPORA[name]
    return sorted(Path(p) for p in corpus.getCorePaths() if f"/corpus/{folder}/" in str(p))


def abc_tunes(text: str) -> list[str]:
    """An ABC file's tunes (each from its ``X:`` line), or the whole text when it has none."""
    starts = [m.start() for m in _X_LINE.finditer(text)]
    if not starts:
        return [text]
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def jobs(source: str) -> list[tuple[str, str, str]]:
    """What to parse for ``source`` (a corpus name, a folder or one file): (piece id, file, ABC
    tune text or "" for a whole file)."""
    if source in CORPORA:
        files = corpus_files(source)
        base: Path | None = None
    else:
        base = Path(source)
        if base.is_file() and base.suffix.lower() in SUFFIXES:  # one file of music
            return _file_jobs([base], base.parent)
        if not base.is_dir():
            known = ", ".join(CORPORA)
            raise TunelabError(
                f"{source}: not a music file, a folder of them, nor a corpus ({known})"
            )
        files = sorted(p for p in base.rglob("*") if p.suffix.lower() in SUFFIXES)
        if not files:
            raise TunelabError(
                f"{source}: no music files (.mid, .midi, .xml, .musicxml, .mxl, .abc, .krn)"
            )
    return _file_jobs(files, base)


def _file_jobs(files: list[Path], base: Path | None) -> list[tuple[str, str, str]]:
    out = []
    for f in files:
        rel = f.name if base is None else str(f.relative_to(base))
        if f.suffix.lower() == ".abc":
            text = f.read_text(encoding="utf-8", errors="replace")
            for i, tune in enumerate(abc_tunes(text)):
                out.append((f"{rel}#{i}", str(f), tune))
        else:
            out.append((rel, str(f), ""))
    return out


def melody(score: Any, pid: str, source: str) -> Piece | None:
    """The first part of a music21 score as a quantised melody; None when it has no notes."""
    from music21 import key, meter

    parts = getattr(score, "parts", None)
    line = parts[0] if parts is not None and len(parts) else score
    flat = line.flatten()
    notes: list[tuple[int, int, int]] = []
    for n in flat.notes:
        if n.duration.isGrace:
            continue
        pitch = max(p.midi for p in n.pitches) if n.isChord else n.pitch.midi
        on = round(float(n.offset) * STEPS_PER_QUARTER)
        dur = max(1, round(float(n.quarterLength) * STEPS_PER_QUARTER))
        if notes and notes[-1][1] == on:  # two notes at one onset: keep the higher
            if pitch > notes[-1][0]:
                notes[-1] = (pitch, on, dur)
            continue
        if notes and notes[-1][1] + notes[-1][2] > on:  # cut where the next one starts
            notes[-1] = (notes[-1][0], notes[-1][1], on - notes[-1][1])
        notes.append((pitch, on, dur))
    if not notes:
        return None
    ts = next(iter(score.flatten().getElementsByClass(meter.TimeSignature)), None)
    k = next(iter(score.flatten().getElementsByClass(key.Key)), None)
    if k is None:
        ks = next(iter(score.flatten().getElementsByClass(key.KeySignature)), None)
        k = ks.asKey("major") if ks is not None else score.analyze("key")
    title = (score.metadata.title or "") if score.metadata is not None else ""
    return Piece(
        pid,
        source,
        str(title),
        k.tonic.pitchClass,
        k.mode if k.mode in ("major", "minor") else "other",
        ts.numerator if ts is not None else 4,
        ts.denominator if ts is not None else 4,
        notes,
    )


def parse_job(job: tuple[str, str, str], source: str) -> Piece | str:
    """One piece, or why it could not be read (a line for the log)."""
    from music21 import converter

    pid, path, tune = job
    try:
        score = converter.parse(tune, format="abc") if tune else converter.parse(path)
        if hasattr(score, "scores"):  # an opus: its first score
            score = score.scores[0]
        piece = melody(score, pid, source)
    except Exception as e:  # music21 raises many kinds on a damaged file
        return (
            f"{pid}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"
        )
    return piece if piece is not None else f"{pid}: skipped (no notes)"


def read_source(
    source: str, limit: int | None = None, workers: int = 2, log: Callable[[str], None] = print
) -> list[Piece]:
    """Parse ``source`` (a corpus name or a folder) into melodies, ``workers`` processes."""
    todo = jobs(source)[:limit] if limit else jobs(source)
    name = source if source in CORPORA else Path(source).name
    pieces, skipped = [], 0
    if workers > 1 and len(todo) > 8:
        with ProcessPoolExecutor(workers) as pool:
            results: Iterator = pool.map(parse_job, todo, [name] * len(todo), chunksize=16)
            done = list(results)
    else:
        done = [parse_job(j, name) for j in todo]
    for r in done:
        if isinstance(r, Piece):
            pieces.append(r)
        else:
            skipped += 1
            if skipped <= 5:
                log(f"tunelab: {r}")
    if skipped:
        log(f"tunelab: {skipped} of {len(todo)} pieces skipped")
    if not pieces:
        raise TunelabError(f"{source}: no piece could be read")
    return pieces


def write_pieces(path: Path, pieces: list[Piece]) -> None:
    from tunelab.files import atomic_write_text

    text = "".join(json.dumps(p.to_json()) + "\n" for p in pieces)
    atomic_write_text(path, text, what="pieces")


def read_pieces(path: Path) -> list[Piece]:
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        try:
            out.append(Piece.from_json(json.loads(line)))
        except (ValueError, TypeError, KeyError) as e:
            raise DataError(str(path), i, f"not a piece ({type(e).__name__})") from None
    return out
