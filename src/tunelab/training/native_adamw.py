"""AdamW steps through tunelab's C kernels (``tunelab/native/adamw.c``).

The arithmetic is PyTorch's fused CPU AdamW's, operation for operation, so the weights and
moments equal ``torch._fused_adamw_``'s bit for bit (tested). What the kernels save is
memory passes around it: a bf16 compute copy's gradient is read as it is (no fp32 cast of
the gradient first), the updated weight is written to its bf16 copy in the same pass (no
cast of every weight before the next forward), all tensors of a group go in one call split
over the threads, and an embedding table is updated from its sparse gradient in place (no
dense gradient buffer, no gather and scatter of rows). Callers check :func:`available`.
"""

from __future__ import annotations

import ctypes
import math

import torch

from tunelab import native


class _Adam(ctypes.Structure):  # adam_t in adamw.c
    _fields_ = [
        (name, ctypes.c_float)
        for name in ("decay", "coef1", "beta2", "coef2", "bc2_sqrt", "eps", "step_size", "scale")
    ]


def available() -> bool:
    return native.library() is not None


def _scalars(group: dict, step: float, scale: float) -> _Adam:
    """The kernel's constants, computed in double and rounded to float as PyTorch's are."""
    lr, wd = float(group["lr"]), float(group["weight_decay"])
    beta1, beta2 = group["betas"]
    return _Adam(
        decay=1.0 - lr * wd if wd != 0 else 1.0,
        coef1=1.0 - beta1,
        beta2=beta2,
        coef2=1.0 - beta2,
        bc2_sqrt=math.sqrt(1.0 - beta2**step),
        eps=group["eps"],
        step_size=lr / (1.0 - beta1**step),
        scale=scale,
    )


def _array(kind, values) -> ctypes.Array:
    return (kind * len(values))(*values)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def dense_step(
    group: dict,
    items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]],
    step: float,
    scale: float = 1.0,
) -> None:
    """AdamW on ``items``: (weight, exp_avg, exp_avg_sq, gradient, bf16 copy or None), all of
    one param group at the same ``step`` (already counted). Weights and moments are fp32 and
    contiguous; a gradient is fp32 or bf16 (an fp32 one is overwritten with its value divided
    by ``scale`` when ``scale != 1``, as torch's kernel does with ``grad_scale``)."""
    lib = native.loaded()  # check available() first
    if not items:
        return
    p, m, v, g, c = zip(*items, strict=True)
    vp = ctypes.c_void_p
    lib.adamw_many(
        len(items),
        _array(vp, [_ptr(t) for t in p]),
        _array(vp, [_ptr(t) for t in m]),
        _array(vp, [_ptr(t) for t in v]),
        _array(vp, [_ptr(t) for t in g]),
        _array(ctypes.c_uint8, [t.dtype == torch.bfloat16 for t in g]),
        _array(vp, [_ptr(t) for t in c]),
        _array(ctypes.c_int64, [t.numel() for t in p]),
        ctypes.byref(_scalars(group, step, scale)),
        torch.get_num_threads(),
    )


def rows_step(
    group: dict,
    weight: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    ids: torch.Tensor,
    values: torch.Tensor,
    live: torch.Tensor,
    step: float,
    scale: float = 1.0,
) -> None:
    """AdamW on a 2-D table from a coalesced sparse gradient (distinct int64 row ``ids`` and
    their fp32 ``values``); ``live`` (bool, one per row) marks rows whose moments may be
    nonzero: they and the gradient's rows take the update, every other row only decays. The
    gradient's rows are marked live."""
    lib = native.loaded()  # check available() first
    rows, dim = weight.shape
    lib.adamw_rows(
        weight.data_ptr(),
        exp_avg.data_ptr(),
        exp_avg_sq.data_ptr(),
        rows,
        dim,
        ids.data_ptr(),
        values.data_ptr(),
        ids.numel(),
        live.data_ptr(),
        ctypes.byref(_scalars(group, step, scale)),
        torch.get_num_threads(),
    )


def sum_squares(tensors: list[torch.Tensor]) -> float:
    """The sum of the squares of fp32/bf16 tensors' elements, in double."""
    lib = native.loaded()  # check available() first
    if not tensors:
        return 0.0
    tensors = [t.contiguous() for t in tensors]
    return lib.sum_squares(
        len(tensors),
        _array(ctypes.c_void_p, [t.data_ptr() for t in tensors]),
        _array(ctypes.c_uint8, [t.dtype == torch.bfloat16 for t in tensors]),
        _array(ctypes.c_int64, [t.numel() for t in tensors]),
        torch.get_num_threads(),
    )
