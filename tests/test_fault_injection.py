"""Crash, full-disk and read-only tests, in the spirit of SQLite's crash testing: a real run is
interrupted at seeded points (SIGKILL inside a forward or backward pass, after an optimizer
update, in an evaluation, between the files of a checkpoint and its rename, in the middle of a
file, while the run folder or an export is written), a disk fills up at a seeded byte, a folder
turns read-only; after each, what is on disk must be consistent (every checkpoint that says it
is complete loads, the run folder is absent or complete) and the same command (plus
``--resume``) must finish with the weights of an uninterrupted run.

The faults live in tests/faulty_train.py (class ``Faults``); the runs are forked from a zygote
that has already imported torch and transformers, so the dozens of runs here take seconds each.
``TUNELAB_FAULT_SEED=N`` replays the tests with other kill points, disk sizes and cuts.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from conftest import write_csv
from fault_helpers import (
    Baseline,
    Zygote,
    assert_same_weights,
    chmod_stops_writes,
    complete_export,
    consistent,
    finish,
    flip_label,
    one_error_line,
    read_points,
    run_args,
    wrote_other_file,
)
from faulty_train import AFTER, PHASES
from tunelab.cli import main

SEED = int(os.environ.get("TUNELAB_FAULT_SEED", "1729"))
KILLS = 12
STEP = PHASES.index("step")
WEIGHT = {"checkpoint": 4}  # of the kills, about 4 times as many inside checkpoint writes
FILES = ("checkpoint", "run-folder", "cleanup")  # the phases that are file operations


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


@pytest.fixture(scope="module")
def baseline(zygote, learnable_model_dir, toy_data, tmp_path_factory) -> Baseline:
    return Baseline(zygote, learnable_model_dir, toy_data, tmp_path_factory.mktemp("baseline"))


# --- 1. changed data is refused on resume ---------------------------------------------------
def test_resume_refuses_data_changed_since_the_checkpoint(zygote, baseline, tmp_path):
    """Killed after step 4, every label of the training file flipped (same size), the same
    command plus --resume: refused with one line naming the file, nothing lost. Put back,
    the run resumes; a checkpoint from before data was recorded resumes with a warning."""
    train = tmp_path / "train.csv"
    shutil.copy(baseline.data["train"], train)
    args = run_args(baseline.model, {**baseline.data, "train": train}, tmp_path / "run")
    rc, log = zygote.run(args, tmp_path, kill_step=4)  # tests/faulty_train.py's kill@4
    assert rc == -9, log[-3000:]
    original = train.read_bytes()
    flip = {b"positive": b"negative", b"negative": b"positive"}
    train.write_bytes(b"\n".join(flip_label(line, flip) for line in original.split(b"\n")))
    assert train.stat().st_size == len(original) and train.read_bytes() != original

    rc, log = zygote.run([*args, "--resume"], tmp_path)
    assert rc == 2
    one_error_line(log, f"{train}: the train file changed since the checkpoint", "--overwrite")
    ckpts = tmp_path / "run.checkpoints"
    assert consistent(tmp_path / "run") == 4 and not (tmp_path / "run").exists()

    train.write_bytes(original)
    (ckpts / "step-000004" / "data.json").unlink()  # as written by tunelab before this check
    rc, log = zygote.run([*args, "--resume"], tmp_path)
    assert rc == 0, log[-3000:]
    assert "warning: " in log and "does not record its data files" in log


# --- 2. SIGKILL at seeded points, resumed each time -------------------------------------------
@pytest.mark.slow
def test_sigkill_at_seeded_points_then_resume_gives_the_same_weights(zygote, baseline, tmp_path):
    """12 kills at seeded points of the uninterrupted run's census, spread over the run and
    over the phases (inside forward and backward passes, after optimizer updates, inside
    evaluations, between and in the middle of the files of a checkpoint, while the run folder
    is written), each followed by the same command plus --resume (without it while there is no
    checkpoint yet). After each, everything on disk is consistent; in the end the weights are
    bitwise those of the uninterrupted run."""
    rng = random.Random(SEED)
    targets = [p for p in baseline.points if p["p"] not in ("start", "run-log")]
    before = {tuple(p["k"]): q for q, p in zip(baseline.points, baseline.points[1:], strict=False)}
    out, hits, last = tmp_path / "run", [], (-2, 0, 0)
    while len(hits) < KILLS:
        step = consistent(out)
        floor = max(last, (step, STEP, 1 << 30) if step is not None else last)
        if out.exists():  # the kill came after the finished folder was in place
            break
        left = [p for p in targets if p["k"] > floor]
        if not left:
            break
        window = left[: max(1, len(left) // (KILLS - len(hits)))]
        counts = {
            ph: sum(h["p"] == ph for h in hits) / WEIGHT.get(ph, 1)
            for ph in {p["p"] for p in window}
        }
        phase = rng.choice(sorted(ph for ph, n in counts.items() if n == min(counts.values())))
        pool = [p for p in window if p["p"] == phase]
        faults: dict = {"root": str(tmp_path), "trace": str(tmp_path / f"kill-{len(hits)}.jsonl")}
        # right after a file was written: half the time (always, until one has been), die
        # half-way through writing it instead
        after_write = [
            p for p in pool if p["p"] in FILES and wrote_other_file(before.get(p["k"]), p)
        ]
        if after_write and (rng.random() < 0.5 or not any("cut" in h for h in hits)):
            pool, faults["truncate"] = after_write, round(rng.random(), 3)
        target = rng.choice(pool)
        faults["kill"] = target["k"]
        resume = ["--resume"] if step is not None else []
        rc, log = zygote.run(baseline.args(out, *resume), tmp_path, faults=faults)
        assert rc == -9, f"no kill at {target}: {log[-3000:]}"
        (hit,) = [p for p in read_points(tmp_path / f"kill-{len(hits)}.jsonl") if p.get("kill")]
        hits.append(hit)
        last = hit["k"]
        where = "after training" if hit["k"][0] == AFTER else f"at step {hit['k'][0]}"
        cut = f" (cut {hit['cut']})" if "cut" in hit else ""
        print(f"kill {len(hits):2d}: {hit['p']:<10} {where}: {hit['d']}{cut}")
    consistent(out)
    finish(zygote, baseline, out, tmp_path)
    assert len(hits) >= 10
    assert any(h["p"] == "checkpoint" for h in hits), "no kill landed inside a checkpoint write"
    assert_same_weights(out, baseline)
    assert not (tmp_path / "run.checkpoints").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_killed_after_the_folder_is_complete_resume_says_it_is_finished(zygote, baseline, tmp_path):
    """Killed after the run folder was renamed into place but while its checkpoints were
    being removed: --resume finishes at once (the folder is not replaced), and the leftover
    checkpoints go."""
    out = tmp_path / "run"
    cleanup = next(p["k"] for p in baseline.points if p["p"] == "cleanup")
    faults = {"root": str(tmp_path), "kill": cleanup}
    rc, log = zygote.run(baseline.args(out), tmp_path, faults=faults)
    assert rc == -9 and (tmp_path / "run.checkpoints").exists()
    consistent(out)
    rc, log = zygote.run(baseline.args(out, "--resume"), tmp_path)
    assert rc == 0, log[-3000:]
    assert "already finished" in log and not (tmp_path / "run.checkpoints").exists()
    assert_same_weights(out, baseline)


# --- 3. SIGKILL during export ---------------------------------------------------------------
def test_sigkill_during_export_leaves_no_half_written_folder(zygote, baseline, tmp_path):
    """Killed at seeded points of `tunelab export` (some in the middle of a file): the folder
    is absent (or complete), never half-written, and the same command then works."""
    census = tmp_path / "census.jsonl"
    argv = ["export", "--model-dir", str(baseline.out), "--format", "hf", "--output-dir"]
    faults = {"root": str(tmp_path), "trace": str(census)}
    rc, log = zygote.run([*argv, str(tmp_path / "whole")], tmp_path, faults=faults)
    assert rc == 0, log[-3000:]
    points = [p for p in read_points(census) if p["p"] == "export"]
    rng = random.Random(SEED)
    dest = tmp_path / "export"
    before = {tuple(p["k"]): q for q, p in zip(points, points[1:], strict=False)}
    for i, target in enumerate(sorted(rng.sample(points, 4), key=lambda p: p["k"])):
        spec = {**faults, "kill": target["k"], "trace": str(tmp_path / f"kill-{i}.jsonl")}
        if wrote_other_file(before.get(target["k"]), target) and rng.random() < 0.7:
            spec["truncate"] = round(rng.random(), 3)
        rc, log = zygote.run([*argv, str(dest)], tmp_path, faults=spec)
        assert rc == -9, log[-3000:]
        (hit,) = [p for p in read_points(tmp_path / f"kill-{i}.jsonl") if p.get("kill")]
        print(f"export killed: {hit['d']}" + (f" (cut {hit['cut']})" if "cut" in hit else ""))
        assert not dest.exists() or complete_export(dest)
    rc, log = zygote.run([*argv, str(dest)], tmp_path)
    assert rc == 0, log[-3000:]
    assert complete_export(dest)
    assert (dest / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


# --- 4. a full disk and a read-only folder --------------------------------------------------
WHERE = {"checkpoint": (8, PHASES.index("checkpoint"), 0), "run-folder": (AFTER, 8, 0)}


@pytest.mark.parametrize("phase", ["checkpoint", "run-folder"])
def test_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes(
    zygote, baseline, tmp_path, phase
):
    """The disk fills up at a seeded byte of the step-8 checkpoint (or of the run folder):
    one line, exit 2, the previous checkpoint intact, no folder; once there is room again the
    same command plus --resume ends with the uninterrupted run's weights."""
    step = 8 if phase == "checkpoint" else AFTER
    size = baseline.bytes_of(phase, step)
    room = random.Random(f"{SEED}-{phase}").randrange(size + 1)
    faults = {"root": str(tmp_path), "enospc": {"at": WHERE[phase], "bytes": room}}
    out = tmp_path / "run"
    rc, log = zygote.run(baseline.args(out), tmp_path, faults=faults)
    assert rc == 2, log[-3000:]
    line = one_error_line(log, "No space left on device")
    print(f"disk full after {room} of {size} bytes: {line}")
    assert consistent(out) == (6 if phase == "checkpoint" else 16) and not out.exists()
    assert not list((tmp_path / "run.checkpoints").glob(".tmp-*"))
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    finish(zygote, baseline, out, tmp_path)
    assert_same_weights(out, baseline)


@pytest.mark.parametrize("phase", ["checkpoint", "run-folder"])
def test_read_only_folder_is_one_line_keeps_the_last_checkpoint_and_resumes(
    zygote, baseline, tmp_path, phase
):
    """The checkpoints folder turns read-only after the step-6 checkpoint (or the staged run
    folder once training is over): one line, exit 2, the last checkpoint intact; made
    writable again, the same command plus --resume finishes."""
    out = tmp_path / "run"
    how = "chmod" if chmod_stops_writes(tmp_path) else "inject"
    at, folder = (
        ((6, STEP, 0), str(tmp_path / "run.checkpoints"))
        if phase == "checkpoint"
        else (WHERE["run-folder"], "@staged")
    )
    faults = {"root": str(tmp_path), "readonly": {"at": at, "folder": folder, "how": how}}
    rc, log = zygote.run(baseline.args(out), tmp_path, faults=faults)
    assert rc == 2, log[-3000:]
    line = one_error_line(log, "Permission denied")
    print(f"read-only ({how}): {line}")
    subprocess.run(["chmod", "-R", "u+w", str(tmp_path)], check=True)
    assert consistent(out) == (6 if phase == "checkpoint" else 16) and not out.exists()
    finish(zygote, baseline, out, tmp_path)
    assert_same_weights(out, baseline)


# --- 5. `tunelab runs` shows what a killed run left, and cleans it -----------------------------
def test_runs_lists_the_partial_folder_of_a_killed_run_and_cleans_it(
    zygote, baseline, tmp_path, capsys
):
    root = tmp_path / "runs"
    root.mkdir()
    rc, log = zygote.run(baseline.args(root / "killed"), tmp_path, kill_step=5)
    assert rc == -9
    (dead,) = root.glob(".killed.partial-*")
    live = root / f".other.partial-{os.getpid()}"  # a run still being written: this process
    live.mkdir()
    write_csv(root / "not-a-run.csv", [])
    assert main(["runs", str(root)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line[0].isspace()}
    assert "interrupted, resumable (step 4)" in rows["killed"]
    assert f"running (pid {os.getpid()})" in rows["other"]
    pid = dead.name.rsplit("-", 1)[1]
    assert f"  {dead.name}  pid {pid} is gone; checkpoint at step 4 in killed.checkpoints: " in out
    assert "resume with the same command plus --resume" in out
    assert f"{live.name}  pid {os.getpid()} is still running" in out
    assert f"tunelab runs {root} --clean-partial" in out

    assert main(["runs", str(root), "--clean-partial"]) == 0
    cap = capsys.readouterr()
    assert f"deleted {dead}" in cap.out and f"kept {live}" in cap.err
    assert not dead.exists() and live.exists()
    assert main(["runs", str(root)]) == 0
    assert "resumable (step 4)" in capsys.readouterr().out
    live.rmdir()
    rc, log = zygote.run(baseline.args(root / "killed", "--resume"), tmp_path)  # still resumes
    assert rc == 0, log[-3000:]
    assert_same_weights(root / "killed", baseline)


def test_clean_partial_keeps_the_only_copy_of_a_replaced_run(tmp_path, capsys):
    """Killed between the two renames of --overwrite: the previous folder (.NAME.old-PID) is
    the only copy while NAME is missing, so it is kept; a partial without a checkpoint (an
    export, a run killed before its first checkpoint) says to run the command again."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".a.old-{dead.pid}").mkdir()
    (tmp_path / f".b.old-{dead.pid}").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / f".c.partial-{dead.pid}").mkdir()
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a is missing: rename this folder back" in out and "interrupted (no checkpoint)" in out
    assert f".c.partial-{dead.pid}  pid {dead.pid} is gone; no checkpoint: run the command" in out
    assert main(["runs", str(tmp_path), "--clean-partial"]) == 0
    assert "kept" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".a.old-{dead.pid}", "b"]


def test_write_failures_of_rust_and_cpp_writers_are_os_errors():
    """safetensors and tokenizers (Rust) and torch.save (C++) report a full disk or a
    read-only folder in their own exception types (messages as seen on a real full tmpfs and
    a real read-only folder); tunelab reports them as the OSError they stand for."""
    import errno

    from tunelab.files import as_os_error

    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert as_os_error(rust).errno == errno.ENOSPC  # type: ignore[union-attr]
    torch_open = RuntimeError(
        "[enforce fail at inline_container.cc:747] . open file failed with strerror: "
        "Permission denied"
    )
    assert as_os_error(torch_open).errno == errno.EACCES  # type: ignore[union-attr]
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576")
    assert as_os_error(torch_full, "/").errno in (errno.EIO, errno.ENOSPC)  # type: ignore[union-attr]
    assert as_os_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert as_os_error(KeyboardInterrupt()) is None


@pytest.mark.parametrize(
    "failure",
    [
        "Error while serializing: I/O error: No space left on device (os error 28)",
        "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534",
        "[enforce fail at inline_container.cc:747] . open file failed with strerror: "
        "Permission denied",
    ],
)
def test_a_checkpoint_write_failing_in_any_writer_is_one_line(
    tiny_model_dir, tmp_path, monkeypatch, failure
):
    """However the writer reports it, a failed checkpoint write is one TunelabError naming the
    folder, and the previous checkpoint stays complete (no temporary folder left)."""
    import safetensors.torch
    import torch
    from safetensors import SafetensorError

    from tunelab.errors import TunelabError
    from tunelab.tasks import text_classification as tc
    from tunelab.training import checkpoint

    model = tc.build_model(str(tiny_model_dir), {"labels": ["a", "b"]})
    opt = torch.optim.AdamW(model.parameters())
    d = tmp_path / "ck"
    checkpoint.save(d, model, [opt], [], checkpoint.LoopState(step=1), None, keep=2, data={})

    def fail(*a, **k):
        if rust:
            raise SafetensorError(failure)
        raise RuntimeError(failure)

    rust = "os error" in failure  # safetensors (Rust), else torch.save (C++)
    monkeypatch.setattr(*((safetensors.torch, "save_file") if rust else (torch, "save")), fail)
    with pytest.raises(TunelabError, match=r"ck: cannot write a checkpoint \(.+\); the previous"):
        checkpoint.save(d, model, [opt], [], checkpoint.LoopState(step=2), None, keep=2)
    assert [p.name for p in d.iterdir()] == ["step-000001"]
    assert checkpoint.complete(d) == [d / "step-000001"]
