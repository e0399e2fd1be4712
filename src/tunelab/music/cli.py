"""``tunelab music``: prepare a data set of melodies (parsed once, split by piece), the
baselines' measures; train, evaluate, generate and interpolate live in
:mod:`tunelab.music.train_cli` and :mod:`tunelab.music.generate_cli`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tunelab.errors import TunelabError


def cmd_prepare(a: argparse.Namespace) -> int:
    from tunelab.files import atomic_write_text
    from tunelab.music import corpus, encoding
    from tunelab.music.data import DATASET, PIECES
    from tunelab.runs import check_output_dir

    out = Path(a.output_dir)
    check_output_dir(out, a.overwrite)  # the check every command that writes a folder makes
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    pieces = corpus.read_source(a.source, a.max_pieces, a.workers, log)
    parts = encoding.split(pieces, a.seed)
    out.mkdir(parents=True, exist_ok=True)
    corpus.write_pieces(out / PIECES, pieces)
    counts = {
        name: {
            "pieces": len(ps),
            "windows": sum(len(encoding.windows(p, a.bars)) for p in ps),
        }
        for name, ps in parts.items()
    }
    record = {
        "source": a.source,
        "pieces": len(pieces),
        "steps_per_quarter": corpus.STEPS_PER_QUARTER,
        "bars": a.bars,
        "seed": a.seed,
        "split": {name: [p.id for p in ps] for name, ps in parts.items()},
        "counts": counts,
    }
    atomic_write_text(out / DATASET, json.dumps(record, indent=1), what="data set record")
    print(json.dumps({"pieces": len(pieces), **counts}))
    return 0


def cmd_baselines(a: argparse.Namespace) -> int:
    from tunelab.music import baselines, encoding, metrics
    from tunelab.music.data import load

    record, parts = load(a.data)
    bars = record["bars"]
    train = [w for p in parts["train"] for w in encoding.windows(p, bars)]
    test = [w for p in parts["test"] for w in encoding.windows(p, bars)]
    if not train or not test:
        raise TunelabError(f"{a.data}: no {bars}-bar windows in 4/4 to measure")
    length = bars * 16
    chain = baselines.Markov(train)  # untransposed: its pitch classes are the data's
    rows = {
        "held-out": metrics.summary(test, test),
        "markov": metrics.summary(chain.sample(a.samples, length, a.seed), test),
        "random": metrics.summary(
            baselines.random_melodies(train, a.samples, length, a.seed), test
        ),
    }
    rows["markov"]["test_log_likelihood_per_step"] = chain.log_likelihood(test)
    print(json.dumps({"data": a.data, "train_windows": len(train), **rows}, indent=1))
    return 0


def add_music(sub) -> None:
    m = sub.add_parser(
        "music",
        help="melodies: prepare data, train a VAE or GAN, generate, interpolate, evaluate",
        description="Melodies from the music21 corpus or your MIDI/MusicXML/ABC folder: "
        "prepare a data set, train a VAE or GAN on it (or fine-tune one to a style), compose "
        "as MIDI, WAV and a piano roll, and measure against held-out melodies.",
    )
    msub = m.add_subparsers(dest="music_command", metavar="COMMAND", required=True)
    p = msub.add_parser("prepare", help="parse music once into a data set split by piece")
    p.add_argument("--source", required=True, help="essen, bach, oneill, ryans or a folder")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--max-pieces", type=int, help="parse at most this many pieces")
    p.add_argument("--workers", type=int, default=2, help="parsing processes (default 2)")
    p.add_argument("--bars", type=int, default=2, help="bars per training window (default 2)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split by piece")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_prepare)
    b = msub.add_parser("baselines", help="the random and Markov baselines' measures")
    b.add_argument("--data", required=True, help="a folder from `tunelab music prepare`")
    b.add_argument("--samples", type=int, default=500)
    b.add_argument("--seed", type=int, default=0)
    b.set_defaults(func=cmd_baselines)
    from tunelab.music.generate_cli import add_generate
    from tunelab.music.train_cli import add_train

    add_train(msub)
    add_generate(msub)
