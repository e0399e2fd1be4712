"""Layer freezing: the embeddings and the lower layers stay as pretrained; the top
``freeze_trainable_layers`` layers, everything above them (pooler, final norm) and the head train.
``freeze_trainable_layers: 0`` is a linear probe (only the head and what sits above the layers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunelab.methods import BuildFrom, Method, partial, register_method
from tunelab.methods.full import unchanged


def apply(model: torch.nn.Module, options: dict[str, Any], head: list[str],
          peft_task_type: str) -> torch.nn.Module:
    stack_name, layers = partial.layer_stack(model)
    n = max(0, min(int(options.get("freeze_trainable_layers", 2)), len(layers)))
    frozen_layers = {f"{stack_name}.{i}." for i in range(len(layers) - n)}

    def keep(name: str) -> bool:
        if partial.in_head(name, head):
            return True
        if "embed" in name or name.startswith("embeddings."):
            return False
        return not any(name.startswith(prefix) for prefix in frozen_layers)

    return partial.train_only(model, keep)


def load(run_dir: Path, build_from: BuildFrom, base_path: str) -> torch.nn.Module:
    return partial.load_trainable(build_from(base_path), run_dir)


register_method(Method("freeze", "train only the top N layers (freeze_trainable_layers) and the "
                       "head; fast steps, saves only what trained", 1e-4, apply,
                       partial.save_trainable, load, options=("freeze_trainable_layers",),
                       merge=unchanged))
