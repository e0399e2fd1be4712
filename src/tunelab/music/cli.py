"""``tunelab music``: prepare a data set of melodies (parsed once, split by piece) and measure
samples against held-out melodies. The VAE and GAN models build on this (issue 26)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tunelab.errors import TunelabError

DATASET = "dataset.json"
PIECES = "pieces.jsonl"


def cmd_prepare(a: argparse.Namespace) -> int:
    from tunelab.files import atomic_write_text
    from tunelab.music import corpus, encoding
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


def load(folder: str) -> tuple[dict, dict[str, list]]:
    """A prepared data set: its record and its pieces by split."""
    from tunelab.music import corpus

    d = Path(folder)
    if not (d / DATASET).is_file():
        raise TunelabError(f"{d}: not a prepared music data set (run `tunelab music prepare`)")
    record = json.loads((d / DATASET).read_text(encoding="utf-8"))
    by_id = {p.id: p for p in corpus.read_pieces(d / PIECES)}
    return record, {s: [by_id[i] for i in ids] for s, ids in record["split"].items()}


def cmd_baselines(a: argparse.Namespace) -> int:
    from tunelab.music import baselines, encoding, metrics

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
        help="symbolic music: prepare melodies, measure baselines",
        description="Melodies from the music21 corpus or your MIDI/MusicXML/ABC folder.",
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
