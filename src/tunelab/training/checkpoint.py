"""Training checkpoints: everything a killed run needs to continue exactly where it was.

A checkpoint is a folder ``step-000120`` under ``<output_dir>.checkpoints/`` holding the
trainable weights (and the best weights so far) in safetensors, the optimizer and scheduler
states (tensors and numbers only, loaded with ``weights_only=True``), the RNG states, the
loop counters as JSON, and the size and sha256 of every data file the run reads (a resume on
changed data is refused). It is written to a temporary folder, flushed to disk and renamed into
place, so a crash (or power cut) while writing leaves the previous checkpoint intact; only the
newest ``keep`` are kept. A checkpoint stops counting as complete (its ``checkpoint.json`` is
removed) before the rest of it is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab.errors import TunelabError
from tunelab.files import as_os_error, fsync_dir, fsync_tree
from tunelab.runs import CHECKPOINT_DONE as DONE
from tunelab.runs import pid_alive, write_config

DATA = "data.json"  # size and sha256 of each data file, by its role (train, validation, test)


@dataclass
class LoopState:
    """The loop's counters; with weights, optimizer, scheduler and RNG, the whole run state."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch index
    batch_in_epoch: int = 0  # optimizer steps done within the current epoch
    examples_seen: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int = 0
    best_epoch: float = 0.0
    bad_evals: int = 0
    running_loss: float = 0.0
    running_steps: int = 0
    history: list[dict] = field(default_factory=list)


def _rng_state() -> dict[str, Any]:
    # legacy=True is the default; said explicitly, numpy's stubs then give the tuple form
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # the global RandomState is an MT19937
    return {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state().tolist(),
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(torch.tensor(s["torch"], dtype=torch.uint8))


def save(
    directory: Path,
    model: torch.nn.Module,
    opts: Sequence[torch.optim.Optimizer],
    scheds: Sequence[Any],
    state: LoopState,
    best: dict[str, torch.Tensor] | None,
    keep: int,
    config_yaml: str = "",
    data: dict[str, dict] | None = None,
) -> Path:
    """Write checkpoint ``step-N`` atomically (with the run's ``config.yaml`` and the
    :func:`fingerprint` of its data, so both can be checked on resume); prune older ones.
    Returns its folder."""
    from safetensors.torch import save_file

    final = directory / f"step-{state.step:06d}"
    tmp = directory / f".tmp-step-{state.step:06d}-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(directory)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        weights = {
            n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
        }
        save_file(weights, str(tmp / "trainable.safetensors"))
        if best is not None:
            save_file(
                {n: v.cpu().contiguous() for n, v in best.items()}, str(tmp / "best.safetensors")
            )
        # one state per optimizer / scheduler, in the job's order (a GAN has two of each)
        torch.save([o.state_dict() for o in opts], tmp / "optimizer.pt")
        torch.save([s.state_dict() for s in scheds], tmp / "scheduler.pt")
        (tmp / "rng.json").write_text(json.dumps(_rng_state()), encoding="utf-8")
        write_config(tmp, config_yaml)  # checked against the settings on resume
        if data is not None:
            (tmp / DATA).write_text(json.dumps(data), encoding="utf-8")
        (tmp / DONE).write_text(json.dumps(asdict(state)), encoding="utf-8")
        fsync_tree(tmp)  # on disk before the rename makes it the newest checkpoint
        if final.exists():
            remove(final)
        os.rename(tmp, final)
        fsync_dir(directory)
    except BaseException as e:  # safetensors and torch.save report a full disk in their types
        shutil.rmtree(tmp, ignore_errors=True)
        err = as_os_error(e, directory)
        if err is None:
            raise
        raise TunelabError(
            f"{directory}: cannot write a checkpoint ({err.strerror or err}); the "
            "previous checkpoint is intact"
        ) from None
    for old in complete(directory)[:-keep] if keep > 0 else []:
        remove(old)
    return final


def remove(path: Path) -> None:
    """Delete checkpoint ``path``; it stops being complete first, so a crash half-way through
    the deletion never leaves a 'complete' checkpoint with files missing."""
    (path / DONE).unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def remove_all(directory: Path) -> None:
    """Delete the checkpoints folder of a finished run (every checkpoint incomplete first)."""
    for p in complete(directory):
        (p / DONE).unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)


def _remove_stale_temporaries(directory: Path) -> None:
    """Drop half-written checkpoints of processes that were killed while writing them."""
    for p in directory.glob(".tmp-step-*-*"):
        pid = p.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def fingerprint(files: dict[str, str | None]) -> dict[str, dict]:
    """Size and sha256 (read in 1 MiB blocks) of each data file, by its role (``train``,
    ``validation``, ``test``); a file that cannot be read is left out (its reader says why)."""
    out: dict[str, dict] = {}
    for role, path in files.items():
        if not path:
            continue
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                while block := f.read(1 << 20):
                    digest.update(block)
        except OSError:
            continue
        out[role] = {"path": str(path), "size": size, "sha256": digest.hexdigest()}
    return out


def read_data(path: Path) -> dict[str, dict] | None:
    """The data fingerprint saved in checkpoint ``path``; None for a checkpoint written before
    tunelab recorded one."""
    f = path / DATA
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TunelabError(f"{f}: corrupt data record ({e})") from None
    if not isinstance(data, dict):
        raise TunelabError(f"{f}: corrupt data record (not a JSON object)")
    return data


def complete(directory: Path) -> list[Path]:
    """Finished checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("step-*") if (p / DONE).is_file())


def _states(path: Path, count: int) -> list:
    states = torch.load(path, weights_only=True)
    states = states if isinstance(states, list) else [states]  # single-state checkpoints
    if len(states) != count:
        raise TunelabError(f"{path}: {len(states)} saved states, the job has {count}")
    return states


def load(
    path: Path, model: torch.nn.Module, opts: Sequence[torch.optim.Optimizer], scheds: Sequence[Any]
) -> tuple[LoopState, dict[str, torch.Tensor] | None]:
    """Restore weights, optimizer, scheduler and RNG from ``path``; returns the loop state and
    the best weights so far."""
    from safetensors.torch import load_file

    if not (path / DONE).is_file():
        raise TunelabError(f"{path}: not a complete tunelab checkpoint (no {DONE})")
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise TunelabError(
            f"{path}: checkpoint does not match this model/method (no weights for {missing[0]})"
        )
    with torch.no_grad():
        for n, v in weights.items():
            params[n].copy_(v)
    best = (
        load_file(str(path / "best.safetensors")) if (path / "best.safetensors").is_file() else None
    )
    for o, state in zip(opts, _states(path / "optimizer.pt", len(opts)), strict=True):
        o.load_state_dict(state)
    for s, state in zip(scheds, _states(path / "scheduler.pt", len(scheds)), strict=True):
        s.load_state_dict(state)
    _set_rng_state(json.loads((path / "rng.json").read_text(encoding="utf-8")))
    return read_state(path), best


def read_state(path: Path) -> LoopState:
    """The loop counters saved in checkpoint ``path``."""
    return LoopState(**json.loads((path / DONE).read_text(encoding="utf-8")))
