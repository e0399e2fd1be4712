"""What every PEFT-backed method shares: saving the adapter, reloading it, merging it.

The trap these helpers exist for: PEFT only saves modules listed in ``modules_to_save``. A head
left out trains in memory, is not saved, and comes back random after reload. Every PEFT method
passes the task head explicitly, and the method test matrix checks predictions after reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from tunelab.methods.base import BuildFrom, MethodContext, option

if TYPE_CHECKING:
    from peft import PeftModel


def save(model: torch.nn.Module, out: Path) -> None:
    # adapter_config.json + adapter_model.safetensors (adapter weights and the full task head)
    cast("PeftModel", model).save_pretrained(str(out), safe_serialization=True)
    card = out / "README.md"  # PEFT's hub model-card template; tunelab.json describes the run
    if card.is_file() and "[More Information Needed]" in card.read_text(encoding="utf-8"):
        card.unlink()


def load(
    run_dir: Path, build_from: BuildFrom, base_path: str, ctx: MethodContext
) -> torch.nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(build_from(base_path), str(run_dir), is_trainable=False)


def merge(model: torch.nn.Module) -> torch.nn.Module:
    """Fold the adapter into the base weights; the task head copy that trained is kept."""
    return cast("PeftModel", model).merge_and_unload()


def targets(names: str) -> str | list[str]:
    """``lora_target_modules`` as PEFT wants it: 'all-linear' or a list of names."""
    t = names or "all-linear"
    return t if t == "all-linear" else [s.strip() for s in str(t).split(",") if s.strip()]


# options shared by LoRA and AdaLoRA (one type, one default: the registry checks it)
def lora_alpha() -> Any:
    return option(32, "LoRA scaling numerator (scale = alpha / r)")


def lora_dropout() -> Any:
    return option(0.1, "dropout on the LoRA branch", lambda v: 0 <= v < 1, "must be in [0, 1)")


def lora_target_modules() -> Any:
    return option("all-linear", "comma-separated module names to adapt, or 'all-linear'")
