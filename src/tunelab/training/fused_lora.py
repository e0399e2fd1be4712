"""PEFT's LoRA linear layer, with fewer passes over the activations, while a CPU training step
runs.

PEFT computes ``result + lora_B(lora_A(dropout(x))) * scaling``: on top of the two small
matmuls that is a pass to scale the input's kept values by 1 / (1 - p), one to scale the
product by ``scaling`` and one to add it, each over a whole activation (and again in
backward). Here the update is one ``addmm`` into the base layer's output with
``alpha = scaling / (1 - p)``: the dropout scale moves past ``lora_A`` (a linear map without
bias, so the result is the same up to rounding), and the input is only multiplied by its 0/1
mask (:func:`tunelab.training.fast_dropout.keep_mask`, drawn exactly as PEFT's dropout would
draw it inside :func:`~tunelab.training.fast_dropout.faster_dropout`). On gemma3-270m with LoRA
on every linear layer that is three passes over 6,272 values per token per layer.

Anything else (a merged or disabled adapter, DoRA and other variants, a bias on ``lora_B``,
mixed adapters per batch, a GPU tensor) runs PEFT's own forward. :func:`fused_lora` swaps
this in for the block only (:class:`~tunelab.training.swap.Swap`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from tunelab.training.fast_dropout import keep_mask
from tunelab.training.swap import Swap

try:
    from peft.tuners.lora import layer as _lora
except ImportError:  # PEFT is a dependency; without it there is no LoRA layer to fuse
    _lora = None  # type: ignore[assignment]


def _plain(layer: Any, x: torch.Tensor, args: tuple, kwargs: dict) -> bool:
    return not (
        args
        or kwargs
        or layer.disable_adapters
        or layer.merged
        or layer.lora_variant
        or x.device.type != "cpu"
        or type(layer.base_layer) is not torch.nn.Linear
    )


def forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """``peft.tuners.lora.layer.Linear.forward`` with the update fused (module docstring)."""
    original = _swap.original
    if not _plain(self, x, args, kwargs):
        return original(self, x, *args, **kwargs)
    adapters = [a for a in self.active_adapters if a in self.lora_A]
    if any(
        self.lora_B[a].bias is not None
        or not isinstance(self.lora_dropout[a], torch.nn.Identity | torch.nn.Dropout)
        for a in adapters
    ):
        return original(self, x, *args, **kwargs)
    result = self.base_layer(x)
    dtype, shape = result.dtype, result.shape
    out = result.reshape(-1, shape[-1])
    for name in adapters:
        a, b = self.lora_A[name], self.lora_B[name]
        h = self._cast_input_dtype(x, a.weight.dtype)
        alpha = self.scaling[name]
        drop = self.lora_dropout[name]
        if isinstance(drop, torch.nn.Dropout) and drop.training and 0 < drop.p < 1:
            h = h * keep_mask(h.shape, drop.p, h.dtype)
            alpha = alpha / (1 - drop.p)
        h = a(h)
        h = h.reshape(-1, h.shape[-1])
        if out.dtype == h.dtype == b.weight.dtype:
            out = torch.addmm(out, h, b.weight.t(), alpha=alpha)
        else:  # mixed dtypes (autocast decides): PEFT's arithmetic
            out = out + b(h) * alpha
    return out.view(shape).to(dtype)


_swap = Swap(_lora.Linear, "forward", forward) if _lora is not None else None


def fused_lora(enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """Within the block, PEFT's LoRA ``Linear`` layers use :func:`forward` (re-entrant)."""
    if _swap is None:
        return contextlib.nullcontext()
    return _swap(enabled)
