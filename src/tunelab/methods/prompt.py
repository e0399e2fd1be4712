"""Soft prompts through PEFT: the model stays frozen; learned virtual tokens steer it.

- ``prompt-tuning``: ``num_virtual_tokens`` trainable embeddings prepended to the input.
- ``p-tuning``: the same virtual tokens produced by a small trainable MLP encoder
  (``prompt_encoder_hidden_size``), which trains more stably than free embeddings.
- ``prefix-tuning``: trainable key/value prefixes in every attention layer; PEFT for
  generation, ``methods/prefix.py`` for the other tasks (PEFT refuses them, see there).

Prompt and p-tuning prepend virtual tokens to the sequence, so they serve the tasks with one
output per text; per-token tasks would see shifted positions. The head of those tasks trains
(PEFT adds it to ``modules_to_save`` itself). Soft prompts cannot be merged into weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunelab.methods import peft_common, prefix
from tunelab.methods.base import BuildFrom, Method, MethodContext, option, register_method
from tunelab.tasks.base import Task


def _virtual_tokens() -> Any:
    return option(
        20,
        "prompt-tuning, p-tuning, prefix-tuning: virtual tokens",
        lambda v: v >= 1,
        "must be >= 1",
    )


@dataclass
class PromptOptions:
    num_virtual_tokens: int = _virtual_tokens()


@dataclass
class PTuningOptions:
    num_virtual_tokens: int = _virtual_tokens()
    prompt_encoder_hidden_size: int = option(128, "p-tuning: hidden size of the prompt encoder MLP")


def _one_output_per_text(task: Task) -> bool:
    return task.sequence_level


def _prompt_tuning(
    model: torch.nn.Module, options: PromptOptions, ctx: MethodContext
) -> torch.nn.Module:
    from peft import PromptTuningConfig, get_peft_model

    return get_peft_model(
        model,
        PromptTuningConfig(
            task_type=ctx.task.peft_task_type, num_virtual_tokens=options.num_virtual_tokens
        ),
    )


def _p_tuning(
    model: torch.nn.Module, options: PTuningOptions, ctx: MethodContext
) -> torch.nn.Module:
    from peft import PromptEncoderConfig, get_peft_model

    return get_peft_model(
        model,
        PromptEncoderConfig(
            task_type=ctx.task.peft_task_type,
            num_virtual_tokens=options.num_virtual_tokens,
            encoder_hidden_size=options.prompt_encoder_hidden_size,
        ),
    )


def _peft_prefix(task: Task) -> bool:
    """PEFT's prefix tuning serves generation; for every other task it refuses the model
    (see methods/prefix.py), so the choice follows the task, at training and at loading."""
    return task.generative


def _prefix_tuning(
    model: torch.nn.Module, options: PromptOptions, ctx: MethodContext
) -> torch.nn.Module:
    if not _peft_prefix(ctx.task):
        return prefix.apply(model, options.num_virtual_tokens, list(ctx.head))
    from peft import PrefixTuningConfig, get_peft_model

    return get_peft_model(
        model,
        PrefixTuningConfig(
            task_type=ctx.task.peft_task_type, num_virtual_tokens=options.num_virtual_tokens
        ),
    )


def _save_prefix(model: torch.nn.Module, out: Path) -> None:
    if isinstance(model, prefix.PrefixModel):
        prefix.save(model, out)
    else:
        peft_common.save(model, out)


def _load_prefix(
    run_dir: Path, build_from: BuildFrom, base_path: str, ctx: MethodContext
) -> torch.nn.Module:
    load = peft_common.load if _peft_prefix(ctx.task) else prefix.load
    return load(run_dir, build_from, base_path, ctx)


register_method(
    Method(
        "prompt-tuning",
        "soft prompt (PEFT): trainable virtual-token "
        "embeddings before the text; tiny, weaker on small models",
        3e-2,
        _prompt_tuning,
        peft_common.save,
        peft_common.load,
        options=PromptOptions,
        supports=_one_output_per_text,
    )
)
register_method(
    Method(
        "p-tuning",
        "P-tuning (PEFT): virtual tokens produced by a small "
        "trainable MLP; steadier than a bare soft prompt",
        1e-2,
        _p_tuning,
        peft_common.save,
        peft_common.load,
        options=PTuningOptions,
        supports=_one_output_per_text,
    )
)
register_method(
    Method(
        "prefix-tuning",
        "prefix tuning: trainable key/value prefixes in every "
        "attention layer (PEFT for generation, own module otherwise)",
        1e-2,
        _prefix_tuning,
        _save_prefix,
        _load_prefix,
        options=PromptOptions,
        supports=lambda task: not task.paired,  # its prefix would sit inside a pair's row
    )
)
