"""Full fine-tuning: every weight trains; the run folder holds a complete Transformers model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch

from tunelab.methods.base import BuildFrom, Method, MethodContext, register_method

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def apply(model: torch.nn.Module, options: None, ctx: MethodContext) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def save(model: torch.nn.Module, out: Path) -> None:
    # the task's Transformers model, trained in place
    cast("PreTrainedModel", model).save_pretrained(out, safe_serialization=True)


def load(
    run_dir: Path, build_from: BuildFrom, base_path: str, ctx: MethodContext
) -> torch.nn.Module:
    return build_from(str(run_dir))


def unchanged(model: torch.nn.Module) -> torch.nn.Module:
    """Methods that train the model's own weights are already a plain Transformers model."""
    return model


register_method(
    Method(
        "full",
        "all weights train; largest run folder, usually the best accuracy",
        5e-5,
        apply,
        save,
        load,
        merge=unchanged,
    )
)
