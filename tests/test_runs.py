"""Run folders are all-or-nothing: a crash never leaves a half-written or destroyed folder."""

from __future__ import annotations

import errno

import pytest

from conftest import train_args
from tunelab.cli import main
from tunelab.errors import TunelabError
from tunelab.runs import read_run, staged_dir


def _old_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "tunelab.json").write_text('{"format_version": 1}')
    return out


def test_crash_during_training_keeps_old_run(tiny_model_dir, toy_data, tmp_path, monkeypatch):
    from tunelab.training import pipeline

    def boom(*a, **k):
        raise RuntimeError("simulated crash in the middle of training")

    monkeypatch.setattr(pipeline, "fit", boom)
    out = _old_run(tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(train_args(tiny_model_dir, toy_data, out, "--overwrite"))
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging folder left
    assert (out / "tunelab.json").read_text() == '{"format_version": 1}'


def test_disk_full_while_saving_is_one_line_and_keeps_old_run(
    tiny_model_dir, toy_data, tmp_path, monkeypatch, capsys
):
    from tunelab.training import pipeline

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "write_report", full_disk)
    out = _old_run(tmp_path)
    assert main(train_args(tiny_model_dir, toy_data, out, "--overwrite")) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "writing the run folder failed (No space left on device); any existing "
        "folder there was left untouched"
    )
    # no staging folder left; the last good checkpoint survives for --resume
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.checkpoints"]
    assert (out / "tunelab.json").read_text() == '{"format_version": 1}'


def test_interrupted_staging_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with staged_dir(out, overwrite=False) as tmp:
            (tmp / "model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_only_after_success(tiny_model_dir, toy_data, tmp_path):
    out = _old_run(tmp_path)
    assert main(train_args(tiny_model_dir, toy_data, out, "--overwrite", "--epochs", "1")) == 0
    assert read_run(out).task == "text-classification"


def test_half_written_folder_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "model.safetensors").write_bytes(b"")
    with pytest.raises(TunelabError, match="not a tunelab run folder"):
        read_run(tmp_path / "x")


def test_stale_partial_of_a_killed_run_is_removed(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".run.partial-{dead.pid}"
    stale.mkdir()
    with staged_dir(tmp_path / "run", overwrite=False) as tmp:
        (tmp / "tunelab.json").write_text("{}")
    assert not stale.exists() and (tmp_path / "run" / "tunelab.json").exists()
