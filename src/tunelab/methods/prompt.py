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

from pathlib import Path
from typing import Any

import torch

from tunelab.methods import SEQUENCE_TASKS, BuildFrom, Method, peft_common, prefix, register_method


def _apply(kind: str):
    def apply(model: torch.nn.Module, options: dict[str, Any], head: list[str],
              peft_task_type: str) -> torch.nn.Module:
        from peft import (PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig,
                          get_peft_model)

        n = int(options.get("num_virtual_tokens", 20))
        if kind == "prompt-tuning":
            cfg = PromptTuningConfig(task_type=peft_task_type, num_virtual_tokens=n)
        elif kind == "p-tuning":
            cfg = PromptEncoderConfig(
                task_type=peft_task_type, num_virtual_tokens=n,
                encoder_hidden_size=int(options.get("prompt_encoder_hidden_size", 128)))
        else:
            if peft_task_type != "CAUSAL_LM":
                return prefix.apply(model, options, head)
            cfg = PrefixTuningConfig(task_type=peft_task_type, num_virtual_tokens=n)
        return get_peft_model(model, cfg)
    return apply


def _save_prefix(model: torch.nn.Module, out: Path) -> None:
    (prefix.save if isinstance(model, prefix.PrefixModel) else peft_common.save)(model, out)


def _load_prefix(run_dir: Path, build_from: BuildFrom, base_path: str) -> torch.nn.Module:
    own = (Path(run_dir) / prefix.CONFIG_FILE).is_file()
    return (prefix.load if own else peft_common.load)(run_dir, build_from, base_path)


register_method(Method("prompt-tuning", "soft prompt (PEFT): trainable virtual-token "
                       "embeddings before the text; tiny, weaker on small models", 3e-2,
                       _apply("prompt-tuning"), peft_common.save, peft_common.load,
                       tasks=SEQUENCE_TASKS, options=("num_virtual_tokens",)))
register_method(Method("p-tuning", "P-tuning (PEFT): virtual tokens produced by a small "
                       "trainable MLP; steadier than a bare soft prompt", 1e-2,
                       _apply("p-tuning"), peft_common.save, peft_common.load,
                       tasks=SEQUENCE_TASKS,
                       options=("num_virtual_tokens", "prompt_encoder_hidden_size")))
register_method(Method("prefix-tuning", "prefix tuning: trainable key/value prefixes in every "
                       "attention layer (PEFT for generation, own module otherwise)", 1e-2,
                       _apply("prefix-tuning"), _save_prefix, _load_prefix,
                       options=("num_virtual_tokens",)))
