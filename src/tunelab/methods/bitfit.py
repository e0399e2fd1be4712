"""BitFit: only the bias terms and the task head train (Ben Zaken et al., 2022).

Models without bias terms (Llama, Gemma) have nothing for BitFit to train but the head; that is
refused with a message rather than silently training a linear probe.
"""

from __future__ import annotations

import torch

from tunelab.errors import ConfigError
from tunelab.methods import partial
from tunelab.methods.base import Method, MethodContext, register_method
from tunelab.methods.full import unchanged


def apply(model: torch.nn.Module, options: None, ctx: MethodContext) -> torch.nn.Module:
    head = list(ctx.head)
    biases = [
        n
        for n, _ in model.named_parameters()
        if n.endswith(".bias") and not partial.in_head(n, head)
    ]
    if not biases:
        raise ConfigError(
            f"method 'bitfit' needs bias terms, and {type(model).__name__} has "
            "none outside its head; use lora or ia3 for this model"
        )
    return partial.train_only(model, lambda n: n.endswith(".bias") or partial.in_head(n, head))


register_method(
    Method(
        "bitfit",
        "BitFit: only bias terms and the head train; tiny run folder "
        "(models with biases, e.g. BERT/MiniLM)",
        1e-3,
        apply,
        partial.save_trainable,
        partial.load,
        merge=unchanged,
    )
)
