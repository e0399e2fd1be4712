"""Attention in tunelab's C kernels for bf16 on a CPU with AVX-512: the whole of it per head,
or its element-wise chain per row.

A Transformers model's eager attention is two matmuls around a chain of element-wise
operators: scale the scores, add the mask, softmax, dropout (and the same four backward),
with a copy of Q, K and V into per-head layout before the matmuls and of the output after.
On the short rows of a length-grouped batch (27-80 keys) each operator's per-row overhead
dominates: PyTorch's bf16 softmax of a 32 x 12 x 27 x 27 map takes about 0.9 ms on the 2-core
Xeon, and attention was about 17 ms of a 120 ms MiniLM training step. ``attention.c`` (in
:mod:`tunelab.native`) has two ways to do it:

- **the whole attention** (:class:`_Attention`; AVX-512 BF16, head dim 32, MiniLM's):
  one task per head reads Q, K and V where the projections left them, computes Q K^T with
  bf16 dot products, the chain in float32 registers, D V, and writes the output in the layout
  the model reshapes next; backward recomputes nothing but the dropout mask and accumulates
  in float32. Forward and backward of a 32 x 12-head x 27-key batch: 1.4-1.7 against 4.3-4.8
  ms for PyTorch's operators.
- **the chain alone** (:class:`_Chain`; any AVX-512): PyTorch's matmuls, then the chain in
  one pass per row: 0.53 against 2.1-2.4 ms forward and backward for that map, 1.1 against
  3.0 at 51 keys, 1.9 against 6.0 at 79 (``bench/README.md``).

The dropout mask is the one :mod:`~tunelab.training.fast_dropout` draws for the same seed,
drawn from PyTorch's generator as many times, so a run with the kernels draws the same masks
as a run without them.

:func:`use` registers :func:`attention` with Transformers' ``AttentionInterface`` as
``"tunelab"`` (with the eager additive mask) and switches a model to it; training sets it for
bf16 on a CPU where the kernel built (:func:`available`). Whatever the kernels do not cover
(float32, a boolean or broadcast-over-keys mask, a soft cap, attention sinks, rows over 8,192
keys for the chain) goes to the model's own eager attention, unchanged; grouped key/value
heads are shared as the eager code does.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch

from tunelab import native
from tunelab.training import fast_dropout

if TYPE_CHECKING:
    from transformers import PreTrainedModel

NAME = "tunelab"
MAX_KEYS = 8192  # attention.c's row buffer
_DISTURBING = ("softcap", "sinks", "s_aux")  # kwargs that change the math: the model's own code


def available() -> bool:
    """Whether the fused chain can run here (the kernels built, and the CPU has AVX-512)."""
    return native.supports("attention_chain_available")


def _mask_at(mask: torch.Tensor | None, shape: tuple[int, ...]) -> tuple:
    """Where attention.c reads the additive mask: its address and its batch, head and query
    strides once broadcast to ``shape`` [B, H, Lq, Lk] (0 where broadcast); None and zeros
    for no mask."""
    if mask is None:
        return None, 0, 0, 0
    full = mask.expand(*shape)
    return full.data_ptr(), full.stride(0), full.stride(1), full.stride(2)


class _Chain(torch.autograd.Function):
    """softmax(scores * scale + mask) then dropout, forward and backward, in attention.c."""

    @staticmethod
    def forward(ctx, scores, mask, scale: float, p: float):
        lib = native.loaded()
        b, h, q, k = scores.shape
        scores = scores.contiguous()
        probs = torch.empty_like(scores)
        dropped = torch.empty_like(scores) if p > 0 else None
        seed = fast_dropout._seed() if p > 0 else 0  # one draw, as fast_dropout makes
        lib.attention_chain_fwd(
            scores.data_ptr(),
            *_mask_at(mask, (b, h, q, k)),
            h,
            q,
            b * h * q,
            k,
            scale,
            probs.data_ptr(),
            dropped.data_ptr() if dropped is not None else None,
            seed,
            *fast_dropout.native_mask(p),
            torch.get_num_threads(),
        )
        ctx.save_for_backward(probs)
        ctx.scale, ctx.p, ctx.seed = scale, p, seed
        return dropped if dropped is not None else probs

    @staticmethod
    def backward(ctx, grad):
        lib = native.loaded()
        (probs,) = ctx.saved_tensors
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        b, h, q, k = grad.shape
        lib.attention_chain_bwd(
            grad.data_ptr(),
            probs.data_ptr(),
            b * h * q,
            k,
            ctx.scale,
            int(ctx.p > 0),
            ctx.seed,
            *fast_dropout.native_mask(ctx.p),
            out.data_ptr(),
            torch.get_num_threads(),
        )
        return out, None, None, None


def fused_available() -> bool:
    """Whether the whole attention can run in the kernel (AVX-512 with BF16 dot products)."""
    return native.supports("attention_fused_available")


class _Heads(ctypes.Structure):
    """attention.c's ``heads_t``: where Q, K, V and the mask are, and the sizes."""

    _fields_ = [
        *((n, ctypes.c_void_p) for n in ("q", "k", "v")),
        *((n, ctypes.c_int64) for n in ("qsb", "qsh", "qsl", "ksb", "ksh", "ksl")),
        *((n, ctypes.c_int64) for n in ("vsb", "vsh", "vsl")),
        ("m", ctypes.c_void_p),
        *((n, ctypes.c_int64) for n in ("mb", "mh", "mq", "B", "H", "rep", "Lq", "Lk", "d")),
    ]


def _heads(q, k, v, mask) -> _Heads:
    b, h, lq, d = q.shape
    g, lk = k.shape[1], k.shape[2]
    strides = [t.stride(i) for t in (q, k, v) for i in range(3)]
    mask_at = _mask_at(mask, (b, h, lq, lk))
    return _Heads(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), *strides, *mask_at, b, h, h // g, lq, lk, d
    )


class _Attention(torch.autograd.Function):
    """The whole attention of every head in attention.c: softmax(Q K^T * scale + mask), its
    dropout, times V; returns the output as [B, Lq, H, d] and the probabilities."""

    @staticmethod
    def forward(ctx, q, k, v, mask, scale: float, p: float):
        lib = native.loaded()
        b, h, lq, d = q.shape
        probs = torch.empty(b, h, lq, k.shape[2], dtype=q.dtype)
        out = torch.empty(b, lq, h, d, dtype=q.dtype)
        seed = fast_dropout._seed() if p > 0 else 0  # one draw, as fast_dropout makes
        heads = _heads(q, k, v, mask)
        lib.attention_fused_fwd(
            ctypes.addressof(heads),
            scale,
            probs.data_ptr(),
            out.data_ptr(),
            seed,
            *fast_dropout.native_mask(p),
            int(p > 0),
            torch.get_num_threads(),
        )
        ctx.save_for_backward(q, k, v, probs)
        ctx.scale, ctx.p, ctx.seed = scale, p, seed
        ctx.mark_non_differentiable(probs)
        return out, probs

    @staticmethod
    def backward(ctx, grad, _):
        lib = native.loaded()
        q, k, v, probs = ctx.saved_tensors
        b, h, lq, d = q.shape
        g, lk = k.shape[1], k.shape[2]
        grad = grad.contiguous()
        dq = torch.empty(b, lq, h, d, dtype=q.dtype)
        dk = torch.empty(b, lk, g, d, dtype=q.dtype)
        dv = torch.empty_like(dk)
        heads = _heads(q, k, v, None)
        lib.attention_fused_bwd(
            ctypes.addressof(heads),
            ctx.scale,
            probs.data_ptr(),
            grad.data_ptr(),
            ctx.seed,
            *fast_dropout.native_mask(ctx.p),
            int(ctx.p > 0),
            dq.data_ptr(),
            dk.data_ptr(),
            dv.data_ptr(),
            torch.get_num_threads(),
        )
        return dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2), None, None, None


WHOLE_HEAD_DIMS = (32,)  # where the whole-attention kernel measured faster (bench/README.md)


def _whole(query, key, value) -> bool:
    """Whether the whole attention fits the kernel: a head dim it is faster at (32: MiniLM;
    at 64 it measured no faster than PyTorch's operators, at 256 three times slower: its
    backward's float32 updates of dK and dV grow with the head dim), each of Q, K, V
    contiguous along it, AVX-512 BF16."""
    if query.shape[-1] not in WHOLE_HEAD_DIMS or key.shape[-1] != query.shape[-1]:
        return False
    if any(t.stride(-1) != 1 or t.dtype != query.dtype for t in (query, key, value)):
        return False
    return value.shape == key.shape and fused_available()


def _fits(query, key, mask, kwargs: dict) -> bool:
    """Whether the fused chain computes what the eager code would for these inputs."""
    if query.dtype != torch.bfloat16 or query.device.type != "cpu" or key.dtype != query.dtype:
        return False
    if any(kwargs.get(name) is not None for name in _DISTURBING):
        return False
    if query.dim() != 4 or key.shape[-2] > MAX_KEYS or query.shape[1] % key.shape[1]:
        return False
    if mask is not None:
        want = (query.shape[0], query.shape[1], query.shape[2], key.shape[2])
        if mask.dtype != query.dtype or mask.dim() != 4 or mask.requires_grad:
            return False
        if any(m not in (1, w) for m, w in zip(mask.shape, want, strict=True)):
            return False
        if mask.shape[-1] != want[-1] or mask.stride(-1) != 1:  # the keys: one by one
            return False
    return available()


def _repeat(x: torch.Tensor, heads: int) -> torch.Tensor:
    """Grouped key/value heads repeated to ``heads`` (Transformers' ``repeat_kv``)."""
    b, kv, n, d = x.shape
    if kv == heads:
        return x
    return x[:, :, None].expand(b, kv, heads // kv, n, d).reshape(b, heads, n, d)


@functools.cache
def _eager(module_file: str) -> Callable:
    """The model's own eager attention (its modelling file's ``eager_attention_forward``)."""
    fn = getattr(sys.modules.get(module_file), "eager_attention_forward", None)
    return fn if fn is not None else _plain


def _plain(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention for a model whose modelling file has none of its own."""
    heads = query.shape[1]
    key, value = _repeat(key, heads), _repeat(value, heads)
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    w = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        w = w + attention_mask
    w = torch.nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(query.dtype)
    w = torch.nn.functional.dropout(w, p=dropout, training=module.training)
    return torch.matmul(w, value).transpose(1, 2).contiguous(), w


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """An ``AttentionInterface`` function: eager attention with the fused chain."""
    if not _fits(query, key, attention_mask, kwargs):
        return _eager(type(module).__module__)(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    scale = query.size(-1) ** -0.5 if scaling is None else float(scaling)
    p = float(dropout) if module.training else 0.0
    # the fused dropout only where tunelab's dropout is on (its seeds, its masks)
    fused_p = p if torch.nn.functional.dropout is fast_dropout.dropout else 0.0
    if fused_p and fast_dropout._threshold(fused_p) > 0xFFFF:
        fused_p = 0.0
    if fused_p == p and _whole(query, key, value):
        return _Attention.apply(query, key, value, attention_mask, scale, p)
    heads = query.shape[1]
    key, value = _repeat(key, heads), _repeat(value, heads)
    scores = torch.matmul(query, key.transpose(2, 3))
    weights = _Chain.apply(scores, attention_mask, scale, fused_p)
    if p and not fused_p:
        weights = torch.nn.functional.dropout(weights, p=p, training=True)
    out = torch.matmul(weights, value)
    return out.transpose(1, 2).contiguous(), weights


@functools.cache
def register() -> str:
    """Register :func:`attention` (and the eager mask) with Transformers under :data:`NAME`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, eager_mask)
    return NAME


def use(model: torch.nn.Module) -> bool:
    """Switch the Transformers model in ``model`` (itself or its first submodule that is one)
    to :func:`attention`; False, and the model unchanged, where the kernel is not available or
    the model does not take an attention function."""
    if not available():
        return False
    hf = next((m for m in model.modules() if hasattr(m, "set_attn_implementation")), None)
    if hf is None:
        return False
    try:
        cast("PreTrainedModel", hf).set_attn_implementation(register())
    except (ValueError, KeyError, NotImplementedError):
        return False
    return True
