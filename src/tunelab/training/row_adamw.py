"""Full fine-tuning without a dense gradient for the vocabulary table.

A MiniLM batch of 32 reviews looks up about 900 of the word-embedding table's 30,522 rows,
yet autograd zero-fills the table's dense gradient (47 MB), accumulates into it, and clipping
measures and scales all of it on every step. :func:`sparse_tables` switches such tables to
sparse gradients (``nn.Embedding.sparse``) for the forward pass, :func:`clip_grad_norm` clips
dense and sparse gradients together, and :class:`RowAdamW` hands the fused AdamW kernel a
dense gradient buffer kept across steps in which only the rows the previous step wrote are
zeroed again. The update is dense fused AdamW's (bit for bit when no row repeats within a
batch; a repeated row's lookups are summed in another order), the optimizer state has
torch's AdamW layout, so checkpoints and resumes are unchanged.

Measured on the 2-core AMX Xeon, MiniLM bf16 full fine-tuning, 1 epoch of 8,054 reviews:
mean step 169 -> 162 ms (two paired runs each). Updating only the rows with live moments
instead (gather, fused kernel, scatter) was slower: by mid-epoch half the table's rows have
nonzero moments, and moving them costs more than the dense kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

MIN_ROWS = 4096  # vocabulary tables; position and token-type tables stay dense


def sparse_tables(model: torch.nn.Module) -> list[torch.nn.Embedding]:
    """The trainable embedding tables with at least ``MIN_ROWS`` rows whose weight no other
    module uses (a table tied to an LM head gets dense gradients from it anyway)."""
    shared = {
        id(p)
        for m in model.modules()
        if not isinstance(m, torch.nn.Embedding)
        for p in m.parameters(recurse=False)
    }
    return [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.Embedding)
        and m.weight.requires_grad
        and m.num_embeddings >= MIN_ROWS
        and m.max_norm is None
        and id(m.weight) not in shared
    ]


@contextmanager
def sparse_gradients(tables: Iterable[torch.nn.Embedding]) -> Iterator[None]:
    """Sparse gradients for ``tables`` inside the block, their own setting restored after."""
    saved = [(m, m.sparse) for m in tables]
    for m, _ in saved:
        m.sparse = True
    try:
        yield
    finally:
        for m, was in saved:
            m.sparse = was


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (L2) that also takes sparse gradients; a sparse
    gradient is coalesced in place (duplicate rows summed) first."""
    grads = []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            grads.append(p.grad._values())
        else:
            grads.append(p.grad)
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g, 2.0) for g in grads]), 2.0
    )
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


class RowAdamW(torch.optim.AdamW):
    """Fused AdamW that takes sparse gradients: each is written into a dense gradient buffer
    kept across steps, where only the rows the previous step wrote are zeroed again."""

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, fused=True, **kwargs)
        self._dense: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    @torch.no_grad()
    def step(self, closure=None):
        held = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    held.append((p, p.grad))
                    p.grad = self._densify(p, p.grad)
        try:
            return super().step(closure)
        finally:
            for p, g in held:
                p.grad = g

    def _densify(self, p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        buf, last = self._dense.get(id(p), (None, None))
        if buf is None:
            buf = torch.zeros_like(p, memory_format=torch.contiguous_format)
        elif last is not None:
            buf.index_fill_(0, last, 0.0)
        grad = grad.coalesce()
        ids = grad._indices()[0]
        buf.index_copy_(0, ids, grad._values().to(buf.dtype))
        self._dense[id(p)] = (buf, ids)
        return buf
