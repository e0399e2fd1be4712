"""``tunelab music generate`` (a mood, key, length, tempo and instrument, or raw samples with a
temperature and attribute shifts) and ``tunelab music interpolate`` (between two melodies of
your own, through the VAE's latent space). Each melody is written as MIDI, WAV and PNG."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from tunelab.errors import TunelabError


def _shifts(items: list[str] | None) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise TunelabError(f"--attribute {item!r}: give NAME=AMOUNT, e.g. density=1.5")
    return out


def cmd_generate(a: argparse.Namespace) -> int:
    from tunelab.music import encoding, render
    from tunelab.music.compose import compose
    from tunelab.music.model import load_music_model

    model = load_music_model(a.model)
    out = Path(a.output_dir)
    if a.raw:  # samples straight from the prior, as measured
        ws = model.sample(a.n, a.temperature, a.seed, a.mode, _shifts(a.attribute))
        files: list[dict] = []
        for i, w in enumerate(ws):
            notes = encoding.notes_of(w)
            if not notes:
                files.append({"sample": i, "empty": True})
                continue
            stem = out / f"sample-{a.seed}-{i}"
            files.append({"sample": i, **render.render(notes, stem, a.tempo or 100, a.instrument)})
        print(json.dumps(files, indent=1))
        return 0
    results = [
        asdict(compose(model, out, a.mood, a.key, a.bars, a.tempo, a.instrument, a.seed + i))
        for i in range(a.n)
    ]
    print(json.dumps(results, indent=1, ensure_ascii=False))
    return 0


def _first_window(path: str, bars: int) -> list[int]:
    from tunelab.music import corpus, encoding

    pieces = corpus.read_source(path, None, 1, lambda m: None)
    for p in pieces:
        for w in encoding.windows(p, bars):
            return w
        # a tune outside the range: try it an octave up or down
        for k in (12, -12, 24, -24):
            moved = corpus.Piece(p.id, p.source, p.title, p.tonic, p.mode, p.beats, p.beat_type,
                                 [(n + k, on, d) for n, on, d in p.notes])  # fmt: skip
            ws = encoding.windows(moved, bars)
            if ws:
                return ws[0]
    raise TunelabError(
        f"{path}: no {bars} bars of 4/4 or 2/2 melody with two notes or more to interpolate from"
    )


def cmd_interpolate(a: argparse.Namespace) -> int:
    from tunelab.music import encoding, render
    from tunelab.music.model import load_music_model

    if a.points < 2:
        raise TunelabError("--points must be at least 2")
    model = load_music_model(a.model)
    if model.kind != "vae":
        raise TunelabError(f"{a.model}: interpolation needs a VAE; this is a {model.kind}")
    start, end = _first_window(a.start, model.bars), _first_window(a.end, model.bars)
    path = model.interpolate(start, end, a.points)
    seq = [t for w in path for t in w]
    notes = encoding.notes_of(seq)
    files = render.render(
        notes, Path(a.output_dir) / "interpolation", a.tempo, a.instrument,
        f"{Path(a.start).name} -> {Path(a.end).name}, {a.points} points", steps=len(seq),
    )  # fmt: skip
    bars = len(seq) // model.bar_steps
    print(json.dumps({"points": a.points, "bars": bars, "notes": len(notes), **files}))
    return 0


def add_generate(msub) -> None:
    g = msub.add_parser(
        "generate",
        help="compose melodies (a mood, key, length) as MIDI, WAV and a piano roll",
        description="Compose with a music run: --mood and --key pick the mode, attribute shifts "
        "and tempo; --raw writes plain samples from the prior instead.",
    )
    g.add_argument("--model", required=True, help="a folder from `tunelab music train`")
    g.add_argument("--output-dir", required=True)
    g.add_argument("--mood", help="cheerful, calm, sad, energetic, mysterious, romantic")
    g.add_argument("--key", help="e.g. 'D minor', 'Bb major', 'F#'")
    g.add_argument("--bars", type=int, default=8)
    g.add_argument("--tempo", type=float, help="quarter notes per minute (default: the mood's)")
    g.add_argument("--instrument", default="piano", help="a GM name (flute, violin...) or 0-127")
    g.add_argument("--n", type=int, default=1, help="how many melodies")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--raw", action="store_true", help="plain prior samples, one per window")
    g.add_argument("--temperature", type=float, default=1.0, help="with --raw (VAE)")
    g.add_argument("--mode", choices=("major", "minor"), help="with --raw: the GAN's condition")
    g.add_argument("--attribute", action="append", help="with --raw (VAE): NAME=AMOUNT, e.g. "
                   "density=1.5 (attributes: minor, density, register)")  # fmt: skip
    g.set_defaults(func=cmd_generate)
    i = msub.add_parser(
        "interpolate",
        help="morph one melody into another through the VAE's latent space",
        description="The first bars of two melodies (MIDI, MusicXML, ABC or kern files) are "
        "encoded; codes on the spherical path between them are decoded and joined.",
    )
    i.add_argument("--model", required=True, help="a VAE folder from `tunelab music train`")
    i.add_argument("--start", required=True, help="a music file")
    i.add_argument("--end", required=True, help="another music file")
    i.add_argument("--points", type=int, default=7, help="melodies on the path, ends included")
    i.add_argument("--output-dir", required=True)
    i.add_argument("--tempo", type=float, default=100)
    i.add_argument("--instrument", default="piano")
    i.set_defaults(func=cmd_interpolate)
