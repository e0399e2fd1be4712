"""IA3 through PEFT: learned vectors rescale keys, values and the feed-forward activations.

Far fewer trainable numbers than LoRA (one per channel of each adapted layer). PEFT picks the
adapted layers per architecture (BERT: key, value, output.dense; Llama/Gemma: k/v/down_proj or
q/v/down_proj). IA3 needs a high learning rate: its vectors start at 1 and must move.
"""

from __future__ import annotations

import torch

from tunelab.methods import peft_common
from tunelab.methods.base import Method, MethodContext, register_method


def apply(model: torch.nn.Module, options: None, ctx: MethodContext) -> torch.nn.Module:
    from peft import IA3Config, get_peft_model

    return get_peft_model(
        model, IA3Config(task_type=ctx.task.peft_task_type, modules_to_save=list(ctx.head) or None)
    )


register_method(
    Method(
        "ia3",
        "IA3 (PEFT): learned rescaling vectors on keys, values and "
        "feed-forward layers; the fewest trainable weights",
        2e-2,
        apply,
        peft_common.save,
        peft_common.load,
        merge=peft_common.merge,
    )
)
