"""LoRA through PEFT: low-rank updates on the linear layers; the task head trains fully.

Options: ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``; ``use_rslora``
(scale alpha/sqrt(r) instead of alpha/r, steadier at high ranks) and ``use_dora`` (weight-
decomposed LoRA: magnitude and direction trained separately).
"""

from __future__ import annotations

from typing import Any

import torch

from tunelab.methods import Method, peft_common, register_method


def apply(model: torch.nn.Module, options: dict[str, Any], head: list[str],
          peft_task_type: str) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        task_type=peft_task_type, r=int(options.get("lora_r", 16)),
        lora_alpha=int(options.get("lora_alpha", 32)),
        lora_dropout=float(options.get("lora_dropout", 0.1)),
        target_modules=peft_common.targets(options), modules_to_save=list(head) or None,
        use_rslora=bool(options.get("use_rslora", False)),
        use_dora=bool(options.get("use_dora", False)))
    return get_peft_model(model, cfg)


register_method(Method("lora", "low-rank adapters on all linear layers (PEFT); small run folder, "
                       "accuracy close to full", 1e-3, apply, peft_common.save, peft_common.load,
                       options=("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                                "use_rslora", "use_dora"), merge=peft_common.merge))
