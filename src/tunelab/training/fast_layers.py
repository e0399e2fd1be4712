"""LayerNorm and GELU's gradient for bf16 activations in tunelab's C kernels while a training
step runs.

PyTorch's bf16 LayerNorm on a CPU keeps a row's statistics in bf16 and its backward pass
takes 0.22-0.34 ms for a 864-1024 x 384 batch on the 2-core Xeon; a bf16 MiniLM step has 13
of them. ``layers.c`` (in :mod:`tunelab.native`; AVX-512) computes the row in float32
registers and keeps the mean and 1/std in float32: forward 0.05-0.08 against 0.09-0.12 ms,
backward 0.06-0.11 against 0.22-0.34 (``bench/README.md``), with the weight and bias
gradients summed per thread and then across threads. GELU's (erf) backward there takes
0.41-0.47 ms for 864 x 1536 against PyTorch's 0.59-0.70; its forward is PyTorch's, which was
faster than the kernel's (0.22-0.30 against 0.31-0.49 ms).

:func:`faster_layers` swaps :func:`layer_norm` in for ``torch.nn.functional.layer_norm``
(``nn.LayerNorm`` calls it) and a GELU with that backward into Transformers'
``GELUActivation`` inside a training step, as :mod:`~tunelab.training.fast_dropout` does for
dropout; anything they do not cover (float32, no weight or bias, a normalised shape over more
than the last dimension, another activation, a CPU without AVX-512) goes to PyTorch's own, so
float32 training is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers.activations import GELUActivation

from tunelab import native
from tunelab.training.swap import Swap

_original = torch.nn.functional.layer_norm
_gelu = torch.nn.functional.gelu
_GELU_FORWARD = GELUActivation.forward


def available() -> bool:
    """Whether the kernels built here and the CPU has AVX-512."""
    return native.supports("layers_available")


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        lib = native.loaded()
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
        lib = native.loaded()
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


class _Gelu(torch.autograd.Function):
    """PyTorch's GELU (erf) forward, layers.c's backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _gelu(x)

    @staticmethod
    def backward(ctx, grad):
        lib = native.loaded()
        (x,) = ctx.saved_tensors
        grad = grad.contiguous()
        dx = torch.empty_like(x)
        lib.gelu_bwd(
            grad.data_ptr(), x.data_ptr(), dx.data_ptr(), x.numel(), torch.get_num_threads()
        )
        return dx


def _gelu_forward(self, input: torch.Tensor) -> torch.Tensor:
    """``GELUActivation.forward`` with the C backward for bf16 CPU tensors."""
    if self.act is _gelu and input.dtype == torch.bfloat16 and input.device.type == "cpu":
        if input.requires_grad and input.numel() and available():
            return _Gelu.apply(input.contiguous())
    return _GELU_FORWARD(self, input)


_swaps = (
    Swap(torch.nn.functional, "layer_norm", layer_norm),
    Swap(GELUActivation, "forward", _gelu_forward),
)


@contextlib.contextmanager
def faster_layers(enabled: bool = True) -> Iterator[None]:
    """Within the block, ``torch.nn.functional.layer_norm`` is :func:`layer_norm` and
    ``GELUActivation`` takes its gradient from the C kernel (re-entrant)."""
    with contextlib.ExitStack() as stack:
        for swap in _swaps:
            stack.enter_context(swap(enabled))
        yield
