"""LoRA through PEFT: low-rank updates on the linear layers; the task head trains fully.

Options: ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``; ``use_rslora``
(scale alpha/sqrt(r) instead of alpha/r, steadier at high ranks) and ``use_dora`` (weight-
decomposed LoRA: magnitude and direction trained separately).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunelab.methods import peft_common
from tunelab.methods.base import Method, MethodContext, option, register_method


@dataclass
class LoraOptions:
    lora_r: int = option(16, "LoRA rank", lambda v: v >= 1, "must be >= 1")
    lora_alpha: int = peft_common.lora_alpha()
    lora_dropout: float = peft_common.lora_dropout()
    lora_target_modules: str = peft_common.lora_target_modules()
    use_rslora: bool = option(False, "LoRA: rank-stabilised scaling alpha/sqrt(r)")
    use_dora: bool = option(False, "LoRA: DoRA, weight-decomposed LoRA (magnitude and direction)")


def apply(model: torch.nn.Module, options: LoraOptions, ctx: MethodContext) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        task_type=ctx.task.peft_task_type,
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=peft_common.targets(options.lora_target_modules),
        modules_to_save=list(ctx.head) or None,
        use_rslora=options.use_rslora,
        use_dora=options.use_dora,
    )
    return get_peft_model(model, cfg)


register_method(
    Method(
        "lora",
        "low-rank adapters on all linear layers (PEFT); small run folder, accuracy close to full",
        1e-3,
        apply,
        peft_common.save,
        peft_common.load,
        options=LoraOptions,
        merge=peft_common.merge,
    )
)
