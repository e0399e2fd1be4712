"""The CPU dropout of tunelab.training.fast_dropout: the same operation as PyTorch's (keep
rate, scale, the same mask in backward, seeded), swapped in only inside its block; every
test runs on both paths, tunelab's C kernels and the PyTorch fallback."""

from __future__ import annotations

import pytest
import torch

from tunelab.training.fast_dropout import dropout, faster_dropout, keep_mask

pytestmark = pytest.mark.usefixtures("kernel_path")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_the_keep_rate_is_one_minus_p(dtype, p):
    torch.manual_seed(0)
    mask = keep_mask((500, 1000), p, dtype)
    assert set(mask.float().unique().tolist()) <= {0.0, 1.0}
    # 500,000 draws: the standard error of the rate is below 0.0007
    assert abs((mask == 0).float().mean().item() - p) < 0.004
    assert mask.dtype == (dtype if dtype != torch.float32 else torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_values_are_scaled_and_backward_uses_the_same_mask(dtype):
    torch.manual_seed(1)
    x = (torch.rand(64, 300) + 0.5).to(dtype).requires_grad_()
    y = dropout(x, 0.3)
    assert y.dtype == dtype and y.shape == x.shape
    kept = y != 0
    ratio = (y[kept].float() / x[kept].float()).detach()
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / 0.7), rtol=1e-2)
    y.float().sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad != 0, kept)  # the gradient flows exactly where values were kept


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kept_values_equal_pytorchs_scaling_and_the_mask_is_fresh_per_call(dtype):
    torch.manual_seed(2)
    x = torch.randn(3, 77, 129).to(dtype)  # odd sizes: a partial last block of lanes
    y = dropout(x, 0.1)
    kept = y != 0
    expected = (x * (1 / 0.9))[kept]  # PyTorch's own rounding of x * scale in this dtype
    assert torch.equal(y[kept], expected)
    assert abs(1 - kept.float().mean().item() - 0.1) < 0.01
    assert not torch.equal(kept, dropout(x, 0.1) != 0)


def test_a_non_contiguous_input_gets_a_mask_of_its_own_shape():
    torch.manual_seed(3)
    x = (torch.rand(40, 60) + 1).t().requires_grad_()  # transposed view
    y = dropout(x, 0.5)
    y.sum().backward()
    assert y.shape == (60, 40)
    assert torch.equal(x.grad != 0, y != 0)
    assert torch.allclose(x.grad[y != 0], torch.full_like(x.grad[y != 0], 2.0))


def test_seeded_masks_repeat_and_differ_between_seeds():
    x = torch.ones(1000)
    torch.manual_seed(7)
    a = dropout(x, 0.5)
    torch.manual_seed(7)
    b = dropout(x, 0.5)
    c = dropout(x, 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_what_it_does_not_cover_goes_to_pytorch():
    x = torch.randn(10, 10)
    assert dropout(x, 0.5, training=False) is x
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.count_nonzero(dropout(x, 1.0)) == 0
    y = x.clone()
    dropout(y, 0.5, inplace=True)  # PyTorch's own in-place dropout
    assert 0 < torch.count_nonzero(y) < 100


def test_it_is_swapped_in_only_inside_the_block():
    original = torch.nn.functional.dropout
    with faster_dropout():
        assert torch.nn.functional.dropout is dropout
        with faster_dropout():  # re-entrant
            assert torch.nn.functional.dropout is dropout
        assert torch.nn.functional.dropout is dropout
        layer = torch.nn.Dropout(0.5).train()
        assert 0 < torch.count_nonzero(layer(torch.ones(1000))) < 1000
    assert torch.nn.functional.dropout is original
    with faster_dropout(enabled=False):
        assert torch.nn.functional.dropout is original
    with pytest.raises(RuntimeError), faster_dropout():
        raise RuntimeError("a failing step")
    assert torch.nn.functional.dropout is original
