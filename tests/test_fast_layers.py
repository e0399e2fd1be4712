"""tunelab.training.fast_layers: bf16 LayerNorm in tunelab's C kernels (AVX-512), swapped in
only inside its block. Forward and backward match a float32 LayerNorm within bf16 rounding
(as PyTorch's own bf16 LayerNorm does), the parameter gradients too; float32 and uncovered
inputs run PyTorch's own code, unchanged."""

from __future__ import annotations

import pytest
import torch

from tunelab.training import fast_layers
from tunelab.training.fast_layers import faster_layers, layer_norm

needs_kernel = pytest.mark.skipif(
    not fast_layers.available(), reason="checked by test_uncovered_inputs_run_pytorchs_own"
)


def _inputs(rows: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, n, generator=g) * 3 + 1).bfloat16()
    w = (torch.randn(n, generator=g) * 0.2 + 1).bfloat16()
    b = (torch.randn(n, generator=g) * 0.1).bfloat16()
    return x, w, b


@needs_kernel
@pytest.mark.parametrize("rows,n", [(1, 8), (7, 17), (300, 384), (33, 1000)])
def test_forward_and_backward_match_a_float32_layer_norm(rows, n):
    x, w, b = _inputs(rows, n, rows + n)
    xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
    y = layer_norm(xs.view(1, rows, n), (n,), ws, bs, 1e-12)
    g = torch.randn(1, rows, n, generator=torch.Generator().manual_seed(1)).bfloat16()
    y.backward(g)
    xf, wf, bf = (t.float().requires_grad_() for t in (x, w, b))
    ref = torch.nn.functional.layer_norm(xf, (n,), wf, bf, 1e-12)
    ref.backward(g.float().view(rows, n))
    torch_y = torch.nn.functional.layer_norm(x, (n,), w, b, 1e-12)  # PyTorch's bf16
    assert y.dtype == torch.bfloat16 and y.shape == (1, rows, n)
    ours = (y.float().view(rows, n) - ref).abs().max()
    assert ours <= (torch_y.float() - ref).abs().max() + 1e-6  # no worse than PyTorch's
    assert ours <= 2**-8 * ref.abs().max()

    def rel(a: torch.Tensor, r: torch.Tensor) -> float:
        return ((a.float() - r).abs().max() / r.abs().max()).item()

    assert rel(xs.grad.view(rows, n), xf.grad) < 1e-2
    assert rel(ws.grad, wf.grad) < 1e-2 and rel(bs.grad, bf.grad) < 1e-2
    assert ws.grad.dtype == torch.bfloat16


@needs_kernel
def test_it_is_swapped_in_only_inside_the_block():
    x, _, _ = _inputs(4, 16, 0)
    module = torch.nn.LayerNorm(16).bfloat16()  # nn.LayerNorm calls F.layer_norm
    with faster_layers():
        assert torch.nn.functional.layer_norm is layer_norm
        inside = module(x)
    assert type(inside.grad_fn).__name__ == "_LayerNormBackward"
    assert torch.nn.functional.layer_norm is fast_layers._original
    outside = module(x)
    assert type(outside.grad_fn).__name__ == "NativeLayerNormBackward0"
    assert (inside.float() - outside.float()).abs().max() <= 2**-6  # bf16 steps of values < 4


def test_uncovered_inputs_run_pytorchs_own():
    x, w, b = _inputs(5, 12, 3)
    for args in (
        (x.float(), (12,), w.float(), b.float()),  # float32
        (x, (12,), None, None),  # no affine parameters
        (x.view(5, 3, 4), (3, 4), w.view(3, 4), b.view(3, 4)),  # over two dimensions
    ):
        assert not fast_layers._fits(*args)
        assert torch.equal(layer_norm(*args), torch.nn.functional.layer_norm(*args))
    assert fast_layers._fits(x, (12,), w, b) == fast_layers.available()


@needs_kernel
def test_gelus_gradient_matches_float32_and_its_forward_is_pytorchs():
    from transformers.activations import GELUActivation

    act = GELUActivation()
    x = (torch.randn(37, 1536, generator=torch.Generator().manual_seed(5)) * 3).bfloat16()
    g = torch.randn(37, 1536, generator=torch.Generator().manual_seed(6)).bfloat16()
    xs = x.clone().requires_grad_()
    with faster_layers():
        y = act(xs)
    assert type(y.grad_fn).__name__ == "_GeluBackward"
    assert torch.equal(y, torch.nn.functional.gelu(x))  # PyTorch's forward, bit for bit
    y.backward(g)
    xf = x.float().requires_grad_()
    torch.nn.functional.gelu(xf).backward(g.float())
    assert xs.grad is not None and xs.grad.dtype == torch.bfloat16
    err = (xs.grad.float() - xf.grad).abs() - 2**-8 * xf.grad.abs()  # bf16 rounding
    assert err.max() < 1e-3
    assert type(act(xs).grad_fn).__name__ == "GeluBackward0"  # outside the block: PyTorch's
    tanh = GELUActivation(use_gelu_python=True)  # another activation: its own code, untouched
    with faster_layers():
        assert type(tanh(xs).grad_fn).__name__ != "_GeluBackward"
