"""AdaLoRA through PEFT: LoRA whose rank budget moves to the layers that matter during training.

Every adapted layer starts at ``adalora_init_r`` singular values. After a warm-up
(``adalora_tinit`` of the steps) the loop calls PEFT's ``update_and_allocate`` after each
optimizer step: importance scores are updated and the least important singular values are
masked until the average rank reaches ``adalora_target_r``; the allocation is frozen for the
last ``adalora_tfinal`` of the steps. The loss also carries AdaLoRA's orthogonality penalty
(PEFT adds it only to losses it computes itself; our tasks compute theirs). The final ranks are
saved with the adapter, recorded in ``tunelab.json`` and shown in the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch

from tunelab.errors import ConfigError
from tunelab.methods import peft_common
from tunelab.methods.base import Method, MethodContext, option, register_method

if TYPE_CHECKING:
    from peft.tuners.adalora import AdaLoraModel

ORTH_REG_WEIGHT = 0.5


@dataclass
class AdaLoraOptions:
    adalora_init_r: int = option(12, "AdaLoRA: rank every adapted layer starts with")
    adalora_target_r: int = option(4, "AdaLoRA: average rank left after budgeting")
    adalora_tinit: float = option(0.1, "AdaLoRA: fraction of steps before budgeting starts")
    adalora_tfinal: float = option(0.2, "AdaLoRA: fraction of final steps with the ranks frozen")
    lora_alpha: int = peft_common.lora_alpha()
    lora_dropout: float = peft_common.lora_dropout()
    lora_target_modules: str = peft_common.lora_target_modules()

    def validate(self) -> None:
        if not 1 <= self.adalora_target_r <= self.adalora_init_r:
            raise ConfigError(
                f"key 'adalora_target_r' = {self.adalora_target_r!r} must be "
                "between 1 and adalora_init_r"
            )
        if not (
            self.adalora_tinit >= 0
            and self.adalora_tfinal >= 0
            and self.adalora_tinit + self.adalora_tfinal < 1
        ):
            raise ConfigError(
                f"key 'adalora_tinit' = {self.adalora_tinit!r} and adalora_tfinal "
                "must be >= 0 and sum to less than 1"
            )


def apply(model: torch.nn.Module, options: AdaLoraOptions, ctx: MethodContext) -> torch.nn.Module:
    from peft import AdaLoraConfig, get_peft_model

    total = max(ctx.total_steps, 3)
    tinit = int(options.adalora_tinit * total)
    tfinal = int(options.adalora_tfinal * total)
    if total - tinit - tfinal < 1:  # PEFT needs at least one budgeting step
        tinit, tfinal = 0, 0
    cfg = AdaLoraConfig(
        task_type=ctx.task.peft_task_type,
        init_r=options.adalora_init_r,
        target_r=options.adalora_target_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=peft_common.targets(options.lora_target_modules),
        modules_to_save=list(ctx.head) or None,
        total_step=total,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=max(1, min(10, (total - tinit - tfinal) // 10 or 1)),
        orth_reg_weight=ORTH_REG_WEIGHT,
    )
    return get_peft_model(model, cfg)


def _quiet(fn):
    """PEFT warns on AdaLoRA folders that are correct: a layer whose budget fell to rank 0 looks
    like an unsaved shard to its check, and its generic LoRA code does not read AdaLoRA's
    rank pattern (AdaLoRA's own loader does, and the reload test checks the ranks)."""

    def wrapped(*args):
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*invalid shape.*")
            warnings.filterwarnings("ignore", message=".*rank_pattern keys did not match.*")
            return fn(*args)

    return wrapped


def after_step(model: torch.nn.Module, step: int) -> None:
    """Update importance scores and the rank budget (PEFT's documented call site)."""
    _tuner(model).update_and_allocate(step)


def regularizer(model: torch.nn.Module) -> torch.Tensor:
    """Mean Frobenius distance of P^T P and Q Q^T from the identity (the AdaLoRA paper's R)."""
    terms = []
    for name, p in model.named_parameters():
        if p.requires_grad and ("lora_A" in name or "lora_B" in name) and p.numel():
            cov = p @ p.T if "lora_A" in name else p.T @ p
            eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            terms.append(torch.linalg.matrix_norm(cov - eye))
    return ORTH_REG_WEIGHT * torch.stack(terms).mean() if terms else torch.zeros(())


def _tuner(model: torch.nn.Module) -> AdaLoraModel:
    """The AdaLoRA tuner inside the PeftModel that ``apply`` made."""
    return cast("AdaLoraModel", model.base_model)


def _config(model):
    return model.peft_config[model.active_adapter]


def finalize(model: torch.nn.Module) -> None:
    """Restoring the best weights may bring back masked singular values: mask them again, so
    the model in memory is the model that is saved (saving keeps only the allocated ranks)."""
    pattern = _config(model).rank_pattern
    if pattern:
        tuner = _tuner(model)
        tuner.rankallocator.mask_using_rank_pattern(tuner.model, pattern)


def final_ranks(model: torch.nn.Module) -> dict[str, int]:
    """Adapted layer -> rank kept (the initial rank everywhere if budgeting never ran)."""
    cfg = _config(model)
    if cfg.rank_pattern:
        ranks = {k: int(sum(v)) for k, v in cfg.rank_pattern.items()}
    else:
        ranks = {n: cfg.init_r for n, m in model.named_modules() if hasattr(m, "lora_E") and n}
    # "base_model.model.bert.encoder.layer.0.attention.self.query.lora_E.default" -> "0.query"
    out = {}
    for k, r in ranks.items():
        k = re.sub(r"\.lora_E(\.\w+)?$", "", k)
        k = re.sub(r"^(base_model\.model\.)?", "", k)
        out[k] = r
    return out


def describe(model: torch.nn.Module) -> dict:
    cfg = _config(model)
    ranks = final_ranks(model)
    return {
        "adalora": {
            "init_r": cfg.init_r,
            "target_r": cfg.target_r,
            "total_rank": {"initial": cfg.init_r * len(ranks), "final": sum(ranks.values())},
            "final_ranks": ranks,
        }
    }


register_method(
    Method(
        "adalora",
        "AdaLoRA (PEFT): LoRA whose rank budget is reallocated to important layers "
        "during training; final ranks in the report",
        2e-3,
        apply,
        _quiet(peft_common.save),
        _quiet(peft_common.load),
        options=AdaLoraOptions,
        merge=peft_common.merge,
        after_step=after_step,
        regularizer=regularizer,
        finalize=finalize,
        describe=describe,
    )
)
