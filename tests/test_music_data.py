"""tunelab music's data layer: melodies parsed from real ABC and MIDI files, event tokens that
round-trip, bar-aligned windows, transposition inside the range, a split by piece, the metrics
and the Markov baseline."""

from __future__ import annotations

import json
import random

import pytest

from tunelab.cli import main
from tunelab.music import baselines, corpus, encoding, metrics
from tunelab.music.corpus import Piece
from tunelab.music.encoding import FIRST_PITCH, NO_EVENT, NOTE_OFF

TUNE = """X:1
T:Test tune
M:4/4
L:1/4
K:G
G A B c | d2 B2 | G A B c | d2 z2 |
"""


def _piece(notes, pid="p", beats=4) -> Piece:
    return Piece(pid, "test", notes=notes, beats=beats)


@pytest.mark.parametrize("seed", range(10))
def test_tokens_round_trip_to_the_same_notes(seed):
    rng = random.Random(seed)
    notes, t = [], rng.randrange(0, 4)
    for _ in range(rng.randrange(1, 20)):
        d = rng.randrange(1, 9)
        notes.append((rng.randrange(48, 85), t, d))
        t += d + rng.choice([0, 0, 0, 2])  # sometimes a rest
    seq = encoding.tokens(_piece(notes))
    assert encoding.notes_of(seq) == notes


def test_windows_are_whole_bars_in_range_with_notes():
    notes = [(60 + i % 5, 4 * i, 4) for i in range(16)]  # 4 bars of quarter notes
    ws = encoding.windows(_piece(notes), bars=2)
    assert len(ws) == 3 and all(len(w) == 32 for w in ws)  # bars 1-2, 2-3, 3-4
    assert ws[0][0] == FIRST_PITCH + 60
    assert encoding.windows(_piece([(30, 0, 4), (31, 4, 4)] * 1), bars=1) == []  # out of range
    assert encoding.windows(_piece(notes, beats=3), bars=2) == []  # 3/4: another bar length


def test_transposition_stays_in_the_range():
    w = [FIRST_PITCH + 80, NO_EVENT, NOTE_OFF, FIRST_PITCH + 60]
    assert encoding.transpose(w, 2) == [FIRST_PITCH + 82, NO_EVENT, NOTE_OFF, FIRST_PITCH + 62]
    assert encoding.transpose(w, 5) is None  # 85 > 84
    out = encoding.augment([w])
    assert out and all(encoding.transpose(x, 0) is not None for x in out)
    assert len(out) == len({tuple(x) for x in out})


def test_the_split_is_by_piece_and_seeded():
    pieces = [_piece([(60, 0, 4)], pid=f"p{i}") for i in range(50)]
    a, b = encoding.split(pieces, seed=1), encoding.split(list(reversed(pieces)), seed=1)
    ids = {k: {p.id for p in v} for k, v in a.items()}
    assert ids == {k: {p.id for p in v} for k, v in b.items()}
    assert sum(map(len, ids.values())) == 50 and not ids["train"] & ids["test"]
    assert len(ids["train"]) == 40


def test_an_abc_tune_parses_into_a_quantised_melody():
    assert len(corpus.abc_tunes(TUNE + "\n" + TUNE.replace("X:1", "X:2"))) == 2
    piece = corpus.parse_job(("t#0", "t.abc", TUNE), "test")
    assert isinstance(piece, Piece)
    assert (piece.beats, piece.beat_type, piece.tonic, piece.mode) == (4, 4, 7, "major")
    assert [n[0] for n in piece.notes[:4]] == [67, 69, 71, 72]
    assert piece.notes[4] == (74, 16, 8)  # a half note: 8 sixteenths
    assert corpus.parse_job(("bad", "bad.abc", "X:1\nK:C\n"), "test").startswith("bad: skipped")


def test_real_corpus_tunes_and_a_midi_folder_prepare(tmp_path, capsys):
    import pretty_midi

    essen = corpus.jobs("essen")
    assert len(essen) > 8000  # the Essen collection inside music21
    folder = tmp_path / "mine"
    folder.mkdir()
    for k in range(3):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120)
        inst = pretty_midi.Instrument(0)
        for i in range(16):  # quarter notes at 120 bpm: 0.5 s
            inst.notes.append(pretty_midi.Note(90, 60 + (i + k) % 7, 0.5 * i, 0.5 * i + 0.5))
        pm.instruments.append(inst)
        pm.write(str(folder / f"song{k}.mid"))
    (folder / "tunes.abc").write_text(TUNE + "\n" + TUNE.replace("X:1", "X:2"), encoding="utf-8")
    out = tmp_path / "data"
    assert main(["music", "prepare", "--source", str(folder), "--output-dir", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pieces"] == 5
    record = json.loads((out / "dataset.json").read_text())
    assert sorted(i for ids in record["split"].values() for i in ids) == sorted(
        ["song0.mid", "song1.mid", "song2.mid", "tunes.abc#0", "tunes.abc#1"]
    )
    midi = next(p for p in corpus.read_pieces(out / "pieces.jsonl") if p.id == "song0.mid")
    assert midi.notes[:3] == [(60, 0, 4), (61, 4, 4), (62, 8, 4)]
    # an empty folder and a missing one: one line each, exit 2
    (tmp_path / "empty").mkdir()
    for src in (tmp_path / "empty", tmp_path / "nowhere"):
        assert (
            main(["music", "prepare", "--source", str(src), "--output-dir", str(tmp_path / "x")])
            == 2
        )
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_metrics_measure_what_they_say():
    scale = encoding.tokens(_piece([(60 + s, 4 * i, 4) for i, s in enumerate(metrics.MAJOR)]))
    assert metrics.in_key_ratio(scale) == 1.0
    bar = encoding.tokens(_piece([(60, 0, 8), (64, 8, 8)]))
    up = [t + 2 if t >= FIRST_PITCH else t for t in bar]
    assert metrics.repetition(bar + up + bar) == 1.0  # a transposed repeat counts
    assert metrics.empty_bar_ratio(bar + [NOTE_OFF] + [NO_EVENT] * 15) == 0.5
    assert metrics.note_density(bar + bar) == 2.0
    h = metrics.pitch_class_histogram([scale])
    assert metrics.total_variation(h, h) == 0.0
    other = metrics.pitch_class_histogram([encoding.tokens(_piece([(61, 0, 4)]))])
    assert metrics.total_variation(h, other) == pytest.approx(1.0)


def test_the_markov_chain_learns_transitions_and_samples_seen_tokens():
    ws = [encoding.tokens(_piece([(60, 0, 4), (62, 4, 4), (64, 8, 4), (65, 12, 4)]))] * 5
    chain = baselines.Markov(ws)
    samples = chain.sample(20, 16, seed=1)
    seen = {t for w in ws for t in w}
    assert all(len(w) == 16 and set(w) <= seen for w in samples)
    assert chain.log_likelihood(ws) > chain.log_likelihood([list(reversed(w)) for w in ws])
    rnd = baselines.random_melodies(ws, 10, 16, seed=0)
    assert all(len(w) == 16 for w in rnd)
