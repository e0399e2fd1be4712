"""LayerNorm of bf16 activations in tunelab's C kernels while a training step runs.

PyTorch's bf16 LayerNorm on a CPU keeps a row's statistics in bf16 and its backward pass
takes 0.22-0.34 ms for a 864-1024 x 384 batch on the 2-core Xeon; a bf16 MiniLM step has 13
of them. ``norms.c`` (in :mod:`tunelab.native`; AVX-512) computes the row in float32 registers
and keeps the mean and 1/std in float32: forward 0.05-0.08 against 0.09-0.12 ms, backward
0.06-0.11 against 0.22-0.34 (``bench/README.md``), with the weight and bias gradients summed
per thread and then across threads.

:func:`faster_norms` swaps :func:`layer_norm` in for ``torch.nn.functional.layer_norm``
inside a training step (``nn.LayerNorm`` calls it), as :mod:`~tunelab.training.fast_dropout`
does for dropout; anything it does not cover (float32, no weight or bias, a normalised
shape over more than the last dimension, a CPU without AVX-512) goes to PyTorch's own, so
float32 training is unchanged.
"""

from __future__ import annotations

import contextlib

import torch

from tunelab import native
from tunelab.training.swap import Swap

_original = torch.nn.functional.layer_norm


def available() -> bool:
    """Whether the kernels built here and the CPU has AVX-512."""
    lib = native.library()
    return lib is not None and bool(lib.norms_available())


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        lib = native.library()
        assert lib is not None
        n = x.shape[-1]
        rows = x.numel() // n
        x2 = x.contiguous()
        out = torch.empty_like(x2)
        mean, rstd = torch.empty(rows), torch.empty(rows)
        lib.layer_norm_fwd(
            x2.data_ptr(),
            weight.data_ptr(),
            bias.data_ptr(),
            rows,
            n,
            eps,
            out.data_ptr(),
            mean.data_ptr(),
            rstd.data_ptr(),
            torch.get_num_threads(),
        )
        ctx.save_for_backward(x2, weight, mean, rstd)
        return out

    @staticmethod
    def backward(ctx, grad):
        lib = native.library()
        assert lib is not None
        x, weight, mean, rstd = ctx.saved_tensors
        n = x.shape[-1]
        grad = grad.contiguous()
        dx = torch.empty_like(x)
        dw, db = torch.zeros(n), torch.zeros(n)
        lib.layer_norm_bwd(
            grad.data_ptr(),
            x.data_ptr(),
            mean.data_ptr(),
            rstd.data_ptr(),
            weight.data_ptr(),
            x.numel() // n,
            n,
            dx.data_ptr(),
            dw.data_ptr(),
            db.data_ptr(),
            torch.get_num_threads(),
        )
        w_grad = dw.to(weight.dtype) if ctx.needs_input_grad[1] else None
        b_grad = db.to(weight.dtype) if ctx.needs_input_grad[2] else None
        return dx, w_grad, b_grad, None


def _fits(x, shape, weight, bias) -> bool:
    if x.dtype != torch.bfloat16 or x.device.type != "cpu" or x.numel() == 0:
        return False
    if len(shape) != 1 or weight is None or bias is None:
        return False
    n = x.shape[-1]
    if tuple(shape) != (n,) or weight.shape != (n,) or bias.shape != (n,):
        return False
    if weight.dtype != x.dtype or bias.dtype != x.dtype:
        return False
    return available()


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """``torch.nn.functional.layer_norm`` with the C kernels for bf16 CPU tensors."""
    if not _fits(input, normalized_shape, weight, bias):
        return _original(input, normalized_shape, weight, bias, eps)
    return _LayerNorm.apply(input, weight.contiguous(), bias.contiguous(), float(eps))


_swap = Swap(torch.nn.functional, "layer_norm", layer_norm)


def faster_norms(enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """Within the block, ``torch.nn.functional.layer_norm`` is :func:`layer_norm`."""
    return _swap(enabled)
