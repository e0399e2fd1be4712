"""Layer freezing: the embeddings and the lower layers stay as pretrained; the top
``freeze_trainable_layers`` layers, everything above them (pooler, final norm) and the head train.
``freeze_trainable_layers: 0`` is a linear probe (only the head and what sits above the layers)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunelab.methods import partial
from tunelab.methods.base import Method, MethodContext, option, register_method
from tunelab.methods.full import unchanged


@dataclass
class FreezeOptions:
    freeze_trainable_layers: int = option(
        2, "freeze: how many top layers train (0 = head only)", lambda v: v >= 0, "must be >= 0"
    )


def apply(model: torch.nn.Module, options: FreezeOptions, ctx: MethodContext) -> torch.nn.Module:
    head = list(ctx.head)
    stack_name, layers = partial.layer_stack(model)
    n = max(0, min(options.freeze_trainable_layers, len(layers)))
    frozen_layers = {f"{stack_name}.{i}." for i in range(len(layers) - n)}

    def keep(name: str) -> bool:
        if partial.in_head(name, head):
            return True
        if "embed" in name or name.startswith("embeddings."):
            return False
        return not any(name.startswith(prefix) for prefix in frozen_layers)

    return partial.train_only(model, keep)


register_method(
    Method(
        "freeze",
        "train only the top N layers (freeze_trainable_layers) and the "
        "head; fast steps, saves only what trained",
        1e-4,
        apply,
        partial.save_trainable,
        partial.load,
        options=FreezeOptions,
        merge=unchanged,
    )
)
