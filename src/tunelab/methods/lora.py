"""LoRA through PEFT: low-rank updates on the linear layers; the task head trains fully.

The trap this module avoids: PEFT only saves modules listed in ``modules_to_save``. A head left
out trains in memory, is not saved, and comes back random after reload. We always pass the task
head explicitly, and the round-trip test checks predictions after reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tunelab.methods import BuildFrom, Method, register_method


def apply(model: torch.nn.Module, options: dict[str, Any], head: list[str],
          peft_task_type: str) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = options.get("lora_target_modules", "all-linear")
    if targets != "all-linear":
        targets = [t.strip() for t in str(targets).split(",") if t.strip()]
    cfg = LoraConfig(
        task_type=peft_task_type,
        r=int(options.get("lora_r", 16)),
        lora_alpha=int(options.get("lora_alpha", 32)),
        lora_dropout=float(options.get("lora_dropout", 0.1)),
        target_modules=targets,
        modules_to_save=list(head),
    )
    return get_peft_model(model, cfg)


def save(model: torch.nn.Module, out: Path) -> None:
    # adapter_config.json + adapter_model.safetensors (LoRA matrices and the full task head)
    model.save_pretrained(out, safe_serialization=True)
    card = out / "README.md"  # PEFT's hub model-card template; tunelab.json describes the run
    if card.is_file() and "[More Information Needed]" in card.read_text(encoding="utf-8"):
        card.unlink()


def load(run_dir: Path, build_from: BuildFrom, base_path: str) -> torch.nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(build_from(base_path), str(run_dir), is_trainable=False)


register_method(Method("lora", "low-rank adapters on all linear layers (PEFT); small run folder, "
                       "accuracy close to full", 1e-3, apply, save, load))
