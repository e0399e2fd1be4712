"""Every file a run folder holds, truncated, emptied, bit-flipped or removed: the files needed
to predict refuse to load with one line naming the file, the documents are only flagged, and
the weights are read into memory (never memory-mapped) as views that equal the file's."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tunelab
from conftest import train_args
from tunelab.errors import TunelabError
from tunelab.integrity import is_document, record_files
from tunelab.runs import read_run

DAMAGES = ("truncated", "empty", "bit-flipped", "missing")


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "bit-flipped":
        i = len(data) * 2 // 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :])
    else:
        path.unlink()


@pytest.fixture(scope="module")
def runs(trained_runs, tiny_model_dir, toy_data, tmp_path_factory):
    """full, LoRA (PEFT adapter) and bottleneck adapters (tunelab's own weights file)."""
    from tunelab.cli import main

    d = tmp_path_factory.mktemp("adapter") / "run"
    assert main(train_args(tiny_model_dir, toy_data, d, "--method", "adapter")) == 0
    return {"full": trained_runs["full"], "lora": trained_runs["lora"], "adapter": d}


def test_a_finished_run_lists_every_file_and_loads_without_warnings(runs, caplog):
    for folder in runs.values():
        info = read_run(folder)
        assert info.files == record_files(folder)  # nothing changed after tunelab.json
        assert any(n.endswith(".safetensors") for n in info.files), info.files
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        for folder in runs.values():
            tunelab.load(folder)
    assert not caplog.records, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("kind", ["full", "lora", "adapter"])
def test_every_damaged_file_refuses_or_is_flagged(kind, runs, tmp_path, caplog):
    source = runs[kind]
    names = sorted(read_run(source).files)
    assert len(names) >= 8
    probe = "the plot was great"
    want = tunelab.load(source).predict(probe)
    refused = flagged = 0
    for name in names:
        for how in DAMAGES:
            folder = Path(shutil.copytree(source, tmp_path / f"{name.replace('/', '_')}-{how}"))
            damage(folder / name, how)
            caplog.clear()
            if is_document(name):
                with caplog.at_level(logging.WARNING, logger="tunelab"):
                    got = tunelab.load(folder).predict(probe)
                assert got == want, (name, how)
                assert any(name in r.getMessage() for r in caplog.records), (name, how)
                flagged += 1
            else:
                with pytest.raises(TunelabError) as e:
                    tunelab.load(folder)
                msg = str(e.value)
                assert name in msg and "\n" not in msg, (name, how, msg)
                refused += 1
            shutil.rmtree(folder)
    assert refused >= 4 * 3 and flagged >= 4 * 4  # weights, config, tokenizer; the documents


def test_a_folder_from_before_checksums_loads_with_one_warning(runs, tmp_path, caplog):
    import json

    folder = Path(shutil.copytree(runs["full"], tmp_path / "old"))
    meta = json.loads((folder / "tunelab.json").read_text())
    del meta["files"]
    (folder / "tunelab.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        tunelab.load(folder)
    assert [r.getMessage() for r in caplog.records] == [
        f"{folder}: written before tunelab recorded file checksums; loading it unverified "
        "(re-save it with this version to add them)"
    ]
    # without checksums a damaged file still gives one line, never a traceback
    damage(folder / "model.safetensors", "truncated")
    with pytest.raises(TunelabError, match="model.safetensors"):
        tunelab.load(folder)


@pytest.mark.parametrize(
    "command, how", [("predict", h) for h in DAMAGES] + [("evaluate", "truncated")]
)
def test_cli_on_damaged_weights_is_one_line_and_exit_2(command, how, runs, toy_data, tmp_path):
    folder = Path(shutil.copytree(runs["full"], tmp_path / "run"))
    damage(folder / "model.safetensors", how)
    args = ["--model-dir", str(folder)]
    args += (
        ["--input", str(toy_data["test"])]
        if command == "predict"
        else ["--data", str(toy_data["test"])]
    )
    exe = Path(sys.executable).parent / "tunelab"
    r = subprocess.run([str(exe), command, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "model.safetensors" in r.stderr


def test_weights_are_views_of_one_buffer_equal_to_safetensors(runs):
    from safetensors.torch import load_file

    from tunelab.models.weights import read_safetensors

    path = runs["full"] / "model.safetensors"
    ours = read_safetensors(path, read_run(runs["full"]).files["model.safetensors"])
    ref = load_file(str(path))
    assert ours.keys() == ref.keys()
    assert all(torch.equal(ours[k], ref[k]) and ours[k].dtype == ref[k].dtype for k in ref)
    # a fresh process that loads and predicts holds no mapping of the file: its parameters
    # live in process memory, out of reach of whatever happens to the file afterwards
    code = (
        "import sys, tunelab; m = tunelab.load(sys.argv[1]); m.predict('good');"
        "print(sys.argv[1] + '/model.safetensors' in open('/proc/self/maps').read())"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(runs["full"].resolve())], capture_output=True, text=True
    )
    assert r.stdout.strip() == "False", r.stderr


@pytest.mark.parametrize(
    "header",
    [
        b"\xff" * 8,  # header length past the end
        (20).to_bytes(8, "little") + b"not json at all!!!!!",
        (2).to_bytes(8, "little") + b"[]",
        (60).to_bytes(8, "little")
        + b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 99]}}'[:60],
        b'{"w": 1}'.rjust(8, b" "),
    ],
)
def test_malformed_safetensors_headers_are_one_line_errors(header, tmp_path):
    from tunelab.models.weights import read_safetensors

    f = tmp_path / "model.safetensors"
    f.write_bytes(header + b"\0" * 16)
    with pytest.raises(TunelabError, match="damaged weights file"):
        read_safetensors(f)
