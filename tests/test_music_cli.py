"""`tunelab music train | evaluate | generate | interpolate` end to end on real Essen tunes with
tiny models (session runs in conftest.py): run folders, resume, fine-tuning, the measures with
their baselines, composing for a mood and key, compose_music in the registry, and bad input."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tunelab.cli import main
from tunelab.errors import TunelabError
from tunelab.music import metrics, render
from tunelab.music.corpus import read_source
from tunelab.music.encoding import tokens

TRAIN = ["music", "train", "--size", "tiny", "--eval-samples", "40"]


def _one_line_error(capsys, code: int, fragment: str) -> None:
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert fragment in err, err


def test_a_vae_run_folder_describes_itself(music_runs):
    d = music_runs["vae"]
    record = json.loads((d / "music.json").read_text())
    assert record["kind"] == "vae" and record["data"]["source"] == "essen"
    assert record["training"]["epochs_run"] == 3 and record["machine"]["cores"] >= 1
    m = record["metrics"]
    assert set(m["rows"]) == {"vae", "markov", "random", "held_out"}
    for row in ("vae", "markov", "random"):
        assert 0 <= m["rows"][row]["two_sample_accuracy"] <= 1
        assert 0 <= m["rows"][row]["pitch_class_distance"] <= 1
    assert m["rows"]["random"]["two_sample_accuracy"] > 0.6  # random melodies are told apart
    assert 0 <= m["reconstruction"]["reconstruction_accuracy"] <= 1
    # pairs whose two ends decode alike are left out (a barely trained model has many)
    assert 0 <= m["interpolation"]["pairs"] <= 50
    assert set(m["interpolation"]) == {"pairs", "max_jump", "path_ratio", "in_key"}
    assert set(json.loads((d / "attributes.json").read_text())) == {"minor", "density", "register"}
    assert len((d / "train_log.jsonl").read_text().splitlines()) == 3
    assert "Reconstruction" in (d / "report.md").read_text()
    assert not (d.parent / f"{d.name}.checkpoints").exists()  # dropped once finished


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_an_interrupted_run_resumes_to_the_same_weights(essen_data, tmp_path, monkeypatch, kind):
    import tunelab.music.train_cli as tc

    args = [*TRAIN, "--data", str(essen_data), "--model", kind, "--epochs", "3", "--seed", "5"]
    assert main([*args, "--output-dir", str(tmp_path / "whole")]) == 0
    echo = tc._echo

    def crash(m: str) -> None:
        if m.startswith("epoch 2/"):
            raise KeyboardInterrupt  # Ctrl-C before epoch 2's checkpoint: epoch 1's is there
        echo(m)

    monkeypatch.setattr(tc, "_echo", crash)
    assert main([*args, "--output-dir", str(tmp_path / "cut")]) == 130  # interrupted
    assert not (tmp_path / "cut").exists()  # nothing half-written under the name
    monkeypatch.setattr(tc, "_echo", echo)
    assert main([*args, "--output-dir", str(tmp_path / "cut"), "--resume"]) == 0
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_fine_tuning_starts_from_the_pretrained_run(music_runs, essen_data, tmp_path, capsys):
    out = tmp_path / "minor"
    args = [*TRAIN, "--data", str(essen_data), "--epochs", "1", "--mode", "minor"]
    assert main([*args, "--init", str(music_runs["vae"]), "--output-dir", str(out)]) == 0
    record = json.loads((out / "music.json").read_text())
    assert record["init"] == str(music_runs["vae"].resolve()) and record["data"]["mode"] == "minor"
    assert record["training"]["learning_rate"] == 1e-3  # the gentler fine-tuning default
    capsys.readouterr()
    # a GAN cannot continue a VAE
    code = main(
        [
            *TRAIN,
            "--data",
            str(essen_data),
            "--model",
            "gan",
            "--init",
            str(music_runs["vae"]),
            "--output-dir",
            str(tmp_path / "x"),
        ]
    )
    _one_line_error(capsys, code, "is a vae; --model is gan")


def test_generate_composes_in_the_requested_key_and_length(music_runs, tmp_path, capsys):
    for kind in ("vae", "gan"):
        out = tmp_path / kind
        code = main(
            [
                "music",
                "generate",
                "--model",
                str(music_runs[kind]),
                "--output-dir",
                str(out),
                "--mood",
                "sad",
                "--key",
                "D minor",
                "--bars",
                "4",
                "--tempo",
                "90",
                "--instrument",
                "violin",
            ]
        )
        assert code == 0
        (c,) = json.loads(capsys.readouterr().out)
        assert c["key"] == "D minor" and c["bars"] == 4 and c["tempo"] == 90
        (piece,) = read_source(c["midi"], workers=1, log=lambda m: None)
        tonic, _, _ = metrics.best_scale(tokens(piece))
        assert tonic == 2  # D
        assert max(on + d for _, on, d in piece.notes) <= 4 * 16
        with wave.open(c["wav"]) as w:
            assert w.getnframes() / w.getframerate() == pytest.approx(
                c["seconds"] + render.TAIL_SECONDS, abs=1e-3
            )
    raw = [
        "music",
        "generate",
        "--model",
        str(music_runs["vae"]),
        "--output-dir",
        str(tmp_path / "raw"),
        "--seed",
        "11",
        "--raw",
        "--n",
        "2",
        "--attribute",
        "density=1",
    ]
    assert main(raw) == 0
    first = json.loads(capsys.readouterr().out)
    midi = Path(first[0]["mid"]).read_bytes()
    assert main(raw) == 0 and json.loads(capsys.readouterr().out) == first
    assert Path(first[0]["mid"]).read_bytes() == midi  # the same seed: the same melody


def test_interpolate_between_two_midi_files(music_runs, tmp_path, capsys):
    a = render.to_midi([(60 + i % 5, 4 * i, 4) for i in range(8)], tmp_path / "a.mid")
    b = render.to_midi([(72 - i % 3, 2 * i, 2) for i in range(16)], tmp_path / "b.mid")
    code = main(
        [
            "music",
            "interpolate",
            "--model",
            str(music_runs["vae"]),
            "--start",
            str(a),
            "--end",
            str(b),
            "--points",
            "5",
            "--output-dir",
            str(tmp_path / "i"),
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["points"] == 5 and out["bars"] == 10 and Path(out["wav"]).is_file()
    with wave.open(out["wav"]) as w:  # 10 bars at 100 bpm, rests included, and the tail
        assert w.getnframes() / w.getframerate() == pytest.approx(160 * 0.15 + 0.5, abs=1e-3)
    code = main(
        [
            "music",
            "interpolate",
            "--model",
            str(music_runs["gan"]),
            "--start",
            str(a),
            "--end",
            str(b),
            "--output-dir",
            str(tmp_path / "j"),
        ]
    )
    _one_line_error(capsys, code, "interpolation needs a VAE")


def test_evaluate_prints_the_model_beside_the_baselines(music_runs, essen_data, capsys):
    code = main(
        [
            "music",
            "evaluate",
            "--model",
            str(music_runs["gan"]),
            "--data",
            str(essen_data),
            "--samples",
            "40",
            "--split",
            "validation",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "validation" and set(report["rows"]) >= {"gan", "markov", "random"}
    assert report["rows"]["held_out"]["pitch_class_distance"] == 0


def test_bad_input_gets_one_clear_line(music_runs, essen_data, tmp_path, capsys):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd this is not a MIDI file")
    code = main(
        [
            "music",
            "interpolate",
            "--model",
            str(music_runs["vae"]),
            "--start",
            str(bad),
            "--end",
            str(bad),
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    _one_line_error(capsys, code, "broken.mid")
    code = main(
        [
            "music",
            "generate",
            "--model",
            str(music_runs["vae"]),
            "--output-dir",
            str(tmp_path / "o"),
            "--key",
            "H# major",
        ]
    )
    _one_line_error(capsys, code, "key 'H# major'")
    code = main(["music", "generate", "--model", str(tmp_path), "--output-dir", str(tmp_path)])
    _one_line_error(capsys, code, "not a music model folder")
    code = main([*TRAIN, "--data", str(tmp_path), "--output-dir", str(tmp_path / "r")])
    _one_line_error(capsys, code, "not a prepared music data set")
    code = main(
        [*TRAIN, "--data", str(essen_data), "--output-dir", str(tmp_path / "r"), "--resume"]
    )
    _one_line_error(capsys, code, "nothing to resume")
    code = main([*TRAIN, "--data", str(essen_data), "--output-dir", str(music_runs["vae"])])
    _one_line_error(capsys, code, "already exists")


def test_compose_music_is_a_task_function_backed_by_a_music_run(music_runs, tmp_path, monkeypatch):
    from tunelab.functions import FUNCTIONS
    from tunelab.functions.catalog import get_function
    from tunelab.functions.router import fill_arguments
    from tunelab.music.function import compose_music

    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "models.yaml"))
    monkeypatch.setenv("TUNELAB_MUSIC_DIR", str(tmp_path / "songs"))
    with pytest.raises(TunelabError, match="no model registered for 'compose_music'.*music train"):
        compose_music("calm")
    assert main(["register", "compose_music", str(tmp_path)]) != 0  # not a music run: refused
    assert main(["register", "compose_music", str(music_runs["vae"])]) == 0
    c = compose_music("cheerful", "G major", bars=2, seed=3)
    assert c.key == "G major" and c.bars == 2 and Path(c.wav).parent == tmp_path / "songs"
    assert compose_music("cheerful", "G major", bars=2, seed=3) == c  # reproducible
    assert FUNCTIONS["compose_music"] is compose_music
    assert get_function("compose_music").route_examples is not None  # the router learns it
    assert fill_arguments("compose_music", "来一段欢快的C大调钢琴曲，16小节") == {
        "mood": "cheerful",
        "key": "C大调",
        "bars": 16,
        "instrument": "piano",
    }


def test_a_music_request_takes_the_router_s_path_and_a_plan_says_so():
    from tunelab.planning.compound import looks_compound, run_request

    for request in ("write a happy tune for my video", "来一段欢快的音乐", "play me a song"):
        assert not looks_compound(request)  # tunelab chat routes it to compose_music
    out = run_request("write a happy tune for my video", execute_plan=False, use_rules=True)
    assert "the router serves it" in out["refused"]
    out = run_request("tell me a joke about cats", execute_plan=False, use_rules=True)
    assert out["refused"] == "no registered function serves this request"
