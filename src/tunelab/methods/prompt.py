"""Soft prompts through PEFT: the model stays frozen; learned virtual tokens steer it.

- ``prompt-tuning``: ``num_virtual_tokens`` trainable embeddings prepended to the input.
- ``p-tuning``: the same virtual tokens produced by a small trainable MLP encoder
  (``prompt_encoder_hidden_size``), which trains more stably than free embeddings.
- ``prefix-tuning``: trainable key/value prefixes in every attention layer. PEFT feeds them in
  as ``past_key_values``, which in Transformers 5 only decoder language models accept, so it is
  offered for generation only (PEFT refuses encoders and classification heads).

Prompt and p-tuning prepend virtual tokens to the sequence, so they serve the tasks with one
output per text; per-token tasks would see shifted positions. The head of those tasks trains
(PEFT adds it to ``modules_to_save`` itself). Soft prompts cannot be merged into weights.
"""

from __future__ import annotations

from typing import Any

import torch

from tunelab.methods import SEQUENCE_TASKS, Method, peft_common, register_method


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
            cfg = PrefixTuningConfig(task_type=peft_task_type, num_virtual_tokens=n)
        return get_peft_model(model, cfg)
    return apply


register_method(Method("prompt-tuning", "soft prompt (PEFT): trainable virtual-token "
                       "embeddings before the text; tiny, weaker on small models", 3e-2,
                       _apply("prompt-tuning"), peft_common.save, peft_common.load,
                       tasks=SEQUENCE_TASKS, options=("num_virtual_tokens",)))
register_method(Method("p-tuning", "P-tuning (PEFT): virtual tokens produced by a small "
                       "trainable MLP; steadier than a bare soft prompt", 1e-2,
                       _apply("p-tuning"), peft_common.save, peft_common.load,
                       tasks=SEQUENCE_TASKS,
                       options=("num_virtual_tokens", "prompt_encoder_hidden_size")))
register_method(Method("prefix-tuning", "prefix tuning (PEFT): trainable key/value prefixes "
                       "in every attention layer of a decoder LM", 1e-2,
                       _apply("prefix-tuning"), peft_common.save, peft_common.load,
                       tasks=("generation",), options=("num_virtual_tokens",)))
