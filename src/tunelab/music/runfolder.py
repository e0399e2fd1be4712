"""A music model's run folder, with the habits of a text run (:mod:`tunelab.runs`): written in a
staging folder and renamed into place when training ends, checkpoints next to it for
``--resume``, ``train_log.jsonl`` and a tracker fed every epoch, ``report.md``.

    music.json           kind (vae | gan), model config, data, training record, metrics, machine
    model.safetensors    the weights
    attributes.json      the VAE's attribute vectors (major/minor, density, register)
    train_log.jsonl      one line per epoch
    report.md            what a reader wants first
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tunelab.errors import TunelabError
from tunelab.files import atomic_write_bytes
from tunelab.runs import LOG_FILE, checkpoints_dir, write_json

MUSIC_FILE = "music.json"
WEIGHTS = "model.safetensors"
ATTRIBUTES = "attributes.json"
CHECKPOINT = "music-checkpoint.pt"
KINDS = ("vae", "gan")


def is_music_run(folder: str | Path) -> bool:
    return (Path(folder) / MUSIC_FILE).is_file()


def read_record(folder: str | Path) -> dict:
    f = Path(folder) / MUSIC_FILE
    if not f.is_file():
        raise TunelabError(f"{folder}: not a music model folder (no {MUSIC_FILE}; train one with "
                           "`tunelab music train`)")  # fmt: skip
    try:
        record = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TunelabError(f"{f}: unreadable ({e})") from None
    if record.get("kind") not in KINDS:
        raise TunelabError(f"{f}: field 'kind' is {record.get('kind')!r}, not one of {KINDS}")
    return record


def write_record(folder: Path, record: dict) -> None:
    write_json(folder / MUSIC_FILE, record)


def save_weights(folder: Path, model: torch.nn.Module) -> None:
    tmp = folder / f".{WEIGHTS}.tmp"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / WEIGHTS)


def load_weights(folder: str | Path, model: torch.nn.Module) -> None:
    f = Path(folder) / WEIGHTS
    if not f.is_file():
        raise TunelabError(f"{folder}: no {WEIGHTS} (an unfinished or damaged music run)")
    try:
        model.load_state_dict(load_file(str(f)))
    except RuntimeError as e:
        raise TunelabError(f"{f}: weights do not fit the model in {MUSIC_FILE} ({e})") from None


def checkpoint_path(output_dir: str | Path) -> Path:
    return checkpoints_dir(output_dir) / CHECKPOINT


def save_checkpoint(output_dir: str | Path, state: dict[str, Any]) -> None:
    """Everything to go on from the end of an epoch (weights, optimizer, step, RNG, log),
    written atomically."""
    import io

    p = checkpoint_path(output_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(p, buf.getvalue(), what="music checkpoint")


def load_checkpoint(output_dir: str | Path) -> dict[str, Any]:
    p = checkpoint_path(output_dir)
    if not p.is_file():
        raise TunelabError(f"{output_dir}: nothing to resume (no {p})")
    return torch.load(p, weights_only=False)


def training_state(
    parts: dict[str, Any], generator: torch.Generator, step: int, epoch: int, seconds: float
) -> dict[str, Any]:
    """A checkpoint of a training loop: each part's state (models, optimizers, by name), the
    data order's generator and torch's RNG (noise, dropout), and where the loop stands."""
    return {
        **{name: part.state_dict() for name, part in parts.items()},
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "epoch": epoch,
        "seconds": seconds,
    }


def restore_training(
    state: dict[str, Any], parts: dict[str, Any], generator: torch.Generator
) -> tuple[int, int, float]:
    """Load :func:`training_state` back into ``parts``; (step, epoch, seconds) to go on from."""
    for name, part in parts.items():
        part.load_state_dict(state[name])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])  # noise and dropout go on as they would have
    return state["step"], state["epoch"], state["seconds"]


def budget_spent(max_minutes: float | None, seconds: float) -> bool:
    """Whether a loop with ``--max-minutes`` has used its time (checked after each epoch)."""
    return max_minutes is not None and seconds > 60 * max_minutes


def drop_checkpoints(output_dir: str | Path) -> None:
    import shutil

    shutil.rmtree(checkpoints_dir(output_dir), ignore_errors=True)


class EpochLog:
    """``train_log.jsonl`` in the staging folder plus the chosen tracker."""

    def __init__(self, folder: Path, output_dir: Path, report_to: str, params: dict) -> None:
        from tunelab.training.trackers import make_tracker

        self.file = open(folder / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115
        self.tracker = make_tracker(report_to, folder, output_dir, params)

    def __call__(self, event: dict) -> None:
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()
        if self.tracker is not None:
            self.tracker.log(event)

    def close(self) -> None:
        self.file.close()
        if self.tracker is not None:
            self.tracker.close()
