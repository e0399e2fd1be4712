"""Prefix tuning (Li & Liang, 2021): trainable key/value prefixes in every attention layer.

PEFT has the method, and it is used for generation (decoder LMs). For every other task PEFT
0.21 refuses the model: it looks for a ``past_key_values`` argument, which Transformers 5
renamed to ``cache``. ``PrefixModel`` passes the prefixes through that ``cache`` argument
instead: each forward pass starts from a cache already holding ``num_virtual_tokens`` trained
keys and values per layer, the attention mask is extended to let every token see them, and
position ids start at 0 so the text keeps the positions it was pretrained with.

The prefixes start as the keys and values the pretrained model computes for a few real tokens
(the paper's "initialise with real words", much steadier than random vectors). Only prefixes and
the head train; the run folder holds those tensors and ``tunelab_prefix.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from tunelab.errors import TunelabError
from tunelab.methods import partial
from tunelab.methods.base import BuildFrom, MethodContext

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CONFIG_FILE = "tunelab_prefix.json"


class PrefixModel(torch.nn.Module):
    """A task model whose attention layers all see trained prefixes.

    ``keys``/``values``: (layers, kv_heads, num_virtual_tokens, head_dim).
    """

    def __init__(self, model: torch.nn.Module, num_virtual_tokens: int) -> None:
        super().__init__()
        from transformers import DynamicCache
        from transformers.cache_utils import CacheLayerMixin

        hf = cast("PreTrainedModel", model)  # the task's Transformers model
        self.model = model
        self.config = hf.config
        self.num_virtual_tokens = num_virtual_tokens
        # real-token activations as the starting point: ids spread over the vocabulary
        vocab = int(hf.config.vocab_size)
        ids = torch.linspace(vocab // 10, vocab - 1, num_virtual_tokens).long()[None]
        cache = DynamicCache()
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(
                input_ids=ids.to(hf.device),
                cache=cache,
                position_ids=torch.arange(num_virtual_tokens, device=hf.device)[None],
            )
        model.train(was_training)
        keys, values = [], []
        for layer in cache.layers:  # attention layers, each filled by the pass above
            assert isinstance(layer, CacheLayerMixin)
            assert layer.keys is not None and layer.values is not None
            keys.append(layer.keys[0])
            values.append(layer.values[0])
        self.keys = torch.nn.Parameter(torch.stack(keys))
        self.values = torch.nn.Parameter(torch.stack(values))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ):
        from transformers import DynamicCache

        b, t = input_ids.shape
        p = self.num_virtual_tokens
        cache = DynamicCache()
        for i in range(self.keys.shape[0]):
            cache.update(
                self.keys[i].expand(b, -1, -1, -1), self.values[i].expand(b, -1, -1, -1), i
            )
        if attention_mask is None:
            attention_mask = torch.ones(b, t, dtype=torch.long, device=input_ids.device)
        mask = torch.cat([attention_mask.new_ones(b, p), attention_mask], dim=1)
        positions = torch.arange(t, device=input_ids.device).expand(b, t)
        return self.model(
            input_ids=input_ids, attention_mask=mask, cache=cache, position_ids=positions, **kwargs
        )


def apply(model: torch.nn.Module, num_virtual_tokens: int, head: list[str]) -> torch.nn.Module:
    partial.train_only(model, lambda n: partial.in_head(n, head))
    return PrefixModel(model, num_virtual_tokens)


def save(model: PrefixModel, out: Path) -> None:
    partial.save_trainable(model, out)
    (out / CONFIG_FILE).write_text(
        json.dumps({"num_virtual_tokens": model.num_virtual_tokens}) + "\n", encoding="utf-8"
    )


def load(
    run_dir: Path, build_from: BuildFrom, base_path: str, ctx: MethodContext
) -> torch.nn.Module:
    f = Path(run_dir) / CONFIG_FILE
    if not f.is_file():
        raise TunelabError(f"{run_dir}: incomplete run folder, {CONFIG_FILE} is missing")
    n = int(json.loads(f.read_text(encoding="utf-8"))["num_virtual_tokens"])
    return partial.load_trainable(PrefixModel(build_from(base_path), n), run_dir, ctx.files)
