"""Training checkpoints: everything a killed run needs to continue exactly where it was.

A checkpoint is a folder ``step-000120`` under ``<output_dir>.checkpoints/`` holding the
trainable weights (and the best weights so far) in safetensors, the optimizer and scheduler
states (tensors and numbers only, loaded with ``weights_only=True``), the RNG states and the
loop counters as JSON. It is written to a temporary folder and renamed into place, so a crash
while writing leaves the previous checkpoint intact; only the newest ``keep`` are kept.
"""

from __future__ import annotations

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
from tunelab.runs import write_config

DONE = "checkpoint.json"  # written last: marks a checkpoint complete


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


def checkpoints_dir(output_dir: str | Path) -> Path:
    out = Path(output_dir)
    return out.parent / f"{out.name}.checkpoints"


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
) -> Path:
    """Write checkpoint ``step-N`` atomically (with the run's ``config.yaml``, so it can be
    checked on resume); prune older ones. Returns its folder."""
    from safetensors.torch import save_file

    final = directory / f"step-{state.step:06d}"
    tmp = directory / f".tmp-step-{state.step:06d}-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
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
        (tmp / DONE).write_text(json.dumps(asdict(state)), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TunelabError(
            f"{directory}: cannot write a checkpoint ({e.strerror or e}); the "
            "previous checkpoint is intact"
        ) from None
    for old in complete(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


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
