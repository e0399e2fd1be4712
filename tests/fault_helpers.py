"""What tests/test_fault_injection.py builds its crash tests from: a zygote that forks tunelab
commands (with the faults of tests/faulty_train.py), an uninterrupted baseline run with the
census of its fault points, and the checks of what a crash may leave on disk."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FAULTY = Path(__file__).with_name("faulty_train.py")


class Zygote:
    """``python tests/faulty_train.py --serve``: runs tunelab commands in forked children."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAULTY), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.n = 0

    def run(self, argv: list[str], folder: Path, timeout: float = 300, **req) -> tuple[int, str]:
        """(exit code, or minus the signal; the child's stdout and stderr)."""
        self.n += 1
        log = folder / f"log-{self.n}.txt"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log), **req}) + "\n")
        self.proc.stdin.flush()
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.proc.kill()
            pytest.fail(f"tunelab {' '.join(argv)} did not finish in {timeout} s")
        return json.loads(self.proc.stdout.readline())["rc"], log.read_text()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def run_args(model: Path, data: dict, out: Path, *extra: str) -> list[str]:
    """18 steps (3 epochs of 6), checkpoints after steps 4, 6, 8, 12 and 16, 2 kept."""
    return [
        "train",
        "--model",
        str(model),
        "--train",
        str(data["train"]),
        "--validation",
        str(data["validation"]),
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--learning-rate",
        "3e-3",
        "--max-length",
        "32",
        "--save-steps",
        "4",
        "--report-to",
        "none",
        "--no-progress",
        "--output-dir",
        str(out),
        *extra,
    ]


def read_points(trace: Path) -> list[dict]:
    rows = [json.loads(line) for line in trace.read_text().splitlines()] if trace.exists() else []
    for r in rows:
        r["k"] = tuple(r["k"])
    return rows


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


class Baseline:
    """An uninterrupted run, traced: its weights, and the census of its fault points."""

    def __init__(self, zygote: Zygote, model: Path, data: dict, folder: Path) -> None:
        self.model, self.data, self.folder = model, data, folder
        self.out = folder / "run"
        trace = folder / "census.jsonl"
        faults = {"root": str(folder), "trace": str(trace)}
        rc, log = zygote.run(run_args(model, data, self.out), folder, faults=faults)
        assert rc == 0, log[-3000:]
        self.points = read_points(trace)
        self.weights = weights(self.out)

    def args(self, out: Path, *extra: str) -> list[str]:
        return run_args(self.model, self.data, out, *extra)

    def bytes_of(self, phase: str, step: int) -> int:
        return sum(p.get("b", 0) for p in self.points if p["p"] == phase and p["k"][0] == step)


def assert_same_weights(run: Path, baseline: Baseline) -> None:
    """Bitwise: the resumed run replays the same float operations in the same order (same
    batches, RNG, optimizer state restored exactly), so nothing is merely close."""
    import torch

    got = weights(run)
    assert got.keys() == baseline.weights.keys()
    for name, value in baseline.weights.items():
        assert torch.equal(got[name], value), name


def consistent(out: Path) -> int | None:
    """What a crash may leave: every checkpoint that says it is complete loads in full, and
    the run folder is absent or complete. Returns the newest checkpoint's step."""
    import torch
    from safetensors.torch import load_file

    from tunelab.runs import checkpoints_dir, read_config, read_run
    from tunelab.training import checkpoint

    found = checkpoint.complete(checkpoints_dir(out))
    for c in found:
        state = checkpoint.read_state(c)
        assert c.name == f"step-{state.step:06d}"
        load_file(str(c / "trainable.safetensors"))
        for f in ("optimizer.pt", "scheduler.pt"):
            torch.load(c / f, weights_only=True)
        json.loads((c / "rng.json").read_text())
        assert read_config(c) and checkpoint.read_data(c)
    if out.exists():
        read_run(out)
        weights(out)
    return checkpoint.read_state(found[-1]).step if found else None


def one_error_line(log: str, *needles: str) -> str:
    assert "Traceback" not in log, log[-3000:]
    errors = [line for line in log.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("tunelab: error: "), log[-3000:]
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def finish(zygote: Zygote, baseline: Baseline, out: Path, folder: Path) -> str:
    """The same command, plus --resume when there is something to resume: must finish."""
    from tunelab.runs import checkpoints_dir
    from tunelab.training import checkpoint

    resumable = checkpoint.complete(checkpoints_dir(out)) or out.exists()
    rc, log = zygote.run(baseline.args(out, *(["--resume"] if resumable else [])), folder)
    assert rc == 0, log[-3000:]
    return log


def wrote_other_file(prev: dict | None, point: dict) -> bool:
    """Whether the point just before ``point`` wrote a file (not the one ``point`` opens)."""
    return prev is not None and "f" in prev and prev["f"] != point.get("f")


def flip_label(line: bytes, flip: dict[bytes, bytes]) -> bytes:
    text, sep, label = line.rpartition(b",")
    end = b"\r" if label.endswith(b"\r") else b""
    label = label.rstrip(b"\r")
    return text + sep + flip.get(label, label) + end if sep else line


def complete_export(dest: Path) -> bool:
    from tunelab.runs import read_run

    files = (read_run(dest).export or {})["files"]
    return all((dest / name).stat().st_size == size for name, size in files.items())


def chmod_stops_writes(folder: Path) -> bool:
    """False as root (or with CAP_DAC_OVERRIDE): then the read-only folder is injected."""
    probe = folder / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "x").write_text("x")
        return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)
