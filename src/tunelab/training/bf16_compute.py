"""bf16 training on a CPU: bf16 compute over fp32 master weights, without autocast.

Under ``torch.autocast`` every op decides its own dtype: matmuls cast to bf16, layer norms
and softmax to fp32, residual adds promote to fp32, PEFT's LoRA casts its input to the fp32
adapter weight and back. On the 2-core AMX Xeon those casts and the fp32 element-wise work in
between cost more than the bf16 matmuls save (a bf16 MiniLM step spent 11% in casts alone; a
gemma3-270m LoRA step 14%, and its LoRA dropout ran on fp32 copies of the activations).

:class:`Bf16Compute` runs the forward pass on bf16 *copies* of the fp32 weights instead
(``torch.func.functional_call``; the casts are part of the autograd graph), so every
activation is bf16 end to end while the gradients reach the fp32 weights as fp32: the
optimizer, its state, gradient accumulation and clipping, checkpoints and the saved model
all stay fp32 (mixed precision with master weights, Micikevicius et al., 2018). Layer norms
and softmax take bf16 tensors but accumulate in fp32 inside PyTorch's CPU kernels; the loss
is computed in fp32 by the caller.

With ``copies=True`` the bf16 copies are kept between steps instead, as leaves of their own:
the backward pass leaves bf16 gradients on them, and :class:`RowAdamW` (which the caller
hands them to) updates the fp32 weights from those and writes the new bf16 copies in the
same pass through tunelab's kernels, so neither the ~100 weight casts before a forward nor
the ~100 gradient casts after a backward run (the same numbers: a bf16 gradient widened to
fp32 is exact, and so is the cast). A weight changed in place by anything else (a restored
checkpoint, the best weights) is cast again before the next forward (its version counter).
Only for one backward pass per optimizer step: two would add up in bf16.

Embedding tables are not copied (a full-fine-tuning vocabulary table is half of MiniLM's
weights, and only a few rows are looked up): their output is cast to bf16 instead. A table
tied to an output layer is copied like any weight. Gradient checkpointing recomputes the
forward outside the call, so a checkpointing model keeps autocast (see :func:`applies`).
"""

from __future__ import annotations

from typing import Any

import torch

_BF16 = torch.bfloat16


def _to_bf16(module: torch.nn.Module, args: Any, out: Any) -> Any:
    if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dtype != _BF16:
        return out.to(_BF16)
    return out


def untied_embeddings(model: torch.nn.Module) -> list[torch.nn.Embedding]:
    """The embedding tables whose weight no other module uses (a table tied to an LM head is
    also that head's weight)."""
    shared = {
        id(p)
        for m in model.modules()
        if not isinstance(m, torch.nn.Embedding)
        for p in m.parameters(recurse=False)
    }
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding) and id(m.weight) not in shared
    ]


class Bf16Compute:
    """Calls ``forward`` (the model, or its DDP wrapper) with its fp32 floating-point weights
    replaced by bf16 casts of them, for the duration of the call."""

    def __init__(self, forward: torch.nn.Module, copies: bool = False) -> None:
        self.forward = forward
        self.embeddings = untied_embeddings(forward)
        tables = {id(m.weight) for m in self.embeddings}
        self.weights = [
            (name, p)
            for name, p in forward.named_parameters()
            if p.dtype == torch.float32 and id(p) not in tables
        ]
        # kept copies (copies=True): name -> (bf16 leaf, the weight's version it was cast at)
        self.kept: dict[str, tuple[torch.Tensor, int]] = {}
        if copies:
            for name, p in self.weights:
                copy = p.detach().to(_BF16).requires_grad_(p.requires_grad)
                self.kept[name] = (copy, p._version)

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(fp32 weight, its kept bf16 copy) for the trainable weights."""
        return [(p, self.kept[name][0]) for name, p in self.weights if p.requires_grad]

    def _kept(self) -> dict[str, torch.Tensor]:
        out = {}
        with torch.no_grad():
            for name, p in self.weights:
                copy, version = self.kept[name]
                if p._version != version:  # changed outside the optimizer's kernel
                    copy.copy_(p)
                    self.kept[name] = (copy, p._version)
                out[name] = copy
        return out

    def __call__(self, **inputs: Any) -> Any:
        if self.kept:
            copies = self._kept()
        else:
            copies = {name: p.to(_BF16) for name, p in self.weights}
        # registered per call, so the cast runs after any other hook on the embeddings
        # (the adversarial perturbation of tunelab.training.robust)
        hooks = [m.register_forward_hook(_to_bf16) for m in self.embeddings]
        try:
            return torch.func.functional_call(
                self.forward, copies, args=(), kwargs=inputs, strict=False
            )
        finally:
            for h in hooks:
                h.remove()


def applies(model: torch.nn.Module, precision: str, device: torch.device) -> bool:
    """Whether a training step uses :class:`Bf16Compute`: bf16 on a CPU (CUDA keeps autocast)
    without gradient checkpointing."""
    return (
        precision == "bf16"
        and device.type == "cpu"
        and not any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
    )


def frozen_to_bf16(model: torch.nn.Module) -> int:
    """Store the weights that do not train in bf16 (returns how many tensors changed).

    A frozen weight is cast once instead of at every matmul: for LoRA on gemma3-270m this
    halves the base's memory and removes most of the casts. Trainable weights (and so the
    optimizer) stay fp32, and no method saves frozen weights (they are re-read from the base
    model), so a run folder is the same as in fp32. A layer with a trainable tensor of its own
    (BitFit's biases, an adapter method's layer norms) keeps its frozen ones in fp32 too: one
    layer norm with a bf16 weight and an fp32 bias is an error at inference under autocast.
    """
    n = 0
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if any(p.requires_grad for p in own):
            continue
        for param in own:
            if param.dtype == torch.float32:
                param.data = param.data.to(torch.bfloat16)
                n += 1
    return n
