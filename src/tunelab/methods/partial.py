"""Methods that train a subset of the model's own weights (or small added modules) save only
what trained, in one safetensors file, and rebuild the model as base weights + that file."""

from __future__ import annotations

from pathlib import Path

import torch

from tunelab.errors import TunelabError

WEIGHTS = "trained_weights.safetensors"


def in_head(name: str, head: list[str]) -> bool:
    """Whether parameter ``name`` belongs to one of the task head modules."""
    return any(part in head for part in name.split("."))


def train_only(model: torch.nn.Module, keep) -> torch.nn.Module:
    """Set requires_grad from ``keep(name) -> bool``; returns the model."""
    for name, p in model.named_parameters():
        p.requires_grad_(bool(keep(name)))
    return model


def save_trainable(model: torch.nn.Module, out: Path) -> None:
    from safetensors.torch import save_file

    tensors = {
        n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
    }
    save_file(tensors, str(out / WEIGHTS))


def load_trainable(
    model: torch.nn.Module, run_dir: Path, files: dict | None = None
) -> torch.nn.Module:
    """Copy the saved tensors into ``model``; every saved name must exist with its shape.
    ``files``: the run's recorded checksums, which the file must match."""
    from tunelab.models.weights import read_safetensors

    f = Path(run_dir) / WEIGHTS
    if not f.is_file():
        raise TunelabError(f"{run_dir}: incomplete run folder, {WEIGHTS} is missing")
    state = read_safetensors(f, (files or {}).get(WEIGHTS))
    params = dict(model.named_parameters())
    unknown = [k for k in state if k not in params or params[k].shape != state[k].shape]
    if unknown:
        raise TunelabError(f"{f}: weights do not fit the base model (first: {unknown[0]})")
    for k, v in state.items():  # new tensors: the base's may be shared with other models
        params[k].data = v.to(params[k].dtype)
    return model


def load(run_dir: Path, build_from, base_path: str, ctx) -> torch.nn.Module:
    """The ``load`` of every method that saves only what trained: base weights + that file."""
    return load_trainable(build_from(base_path), run_dir, ctx.files)


def layer_stack(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The longest list of transformer blocks (BERT ``encoder.layer``, Llama ``model.layers``)."""
    best: tuple[str, torch.nn.ModuleList] | None = None
    for name, mod in model.named_modules():
        if (
            isinstance(mod, torch.nn.ModuleList)
            and name.split(".")[-1] in ("layer", "layers", "h", "block", "blocks")
            and len(mod)
        ):
            if best is None or len(mod) > len(best[1]):
                best = (name, mod)
    if best is None:
        raise TunelabError(f"cannot find the transformer layers of {type(model).__name__}")
    return best
