"""Full fine-tuning without a dense gradient for the vocabulary table.

A MiniLM batch of 32 reviews looks up about 900 of the word-embedding table's 30,522 rows,
yet autograd zero-fills the table's dense gradient (47 MB), accumulates into it, and clipping
measures and scales all of it on every step. :func:`sparse_tables` switches such tables to
sparse gradients (``nn.Embedding.sparse``) for the forward pass, :func:`clip_grad_norm` clips
dense and sparse gradients together (training clips through :meth:`RowAdamW.clip_grad_norm_`,
which leaves the scaling to the fused step), and :class:`RowAdamW` updates the table from them.
With tunelab's C kernels (:mod:`tunelab.training.native_adamw`) every tensor takes one
kernel call per param group: the table is updated in place from its sparse gradient (rows
never seen only decay), and weights trained through kept bf16 compute copies
(:meth:`RowAdamW.use_compute_copies`) read the copies' bf16 gradients and write the copies.
Without them, PyTorch's fused kernel: the table on its live rows only while few rows are live,
then through a dense gradient buffer in which only the rows the previous step wrote are zeroed
again. Either way the update is dense fused AdamW's (bit for bit when no row repeats within a
batch; a repeated row's lookups are summed in another order), and the optimizer state has
torch's AdamW layout, so checkpoints and resumes are unchanged.

Measured on the 2-core AMX Xeon, bf16: a MiniLM full fine-tuning step 172.9 -> 162.9 ms (by
mid-epoch half of its table is live, so the buffer serves; live rows only throughout was
slower than the dense kernel), a gemma3-270m one (262,144 rows, few live) 1,400 -> 1,198 ms
without weight decay and 1,357 -> 1,234 ms with 0.01.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

from tunelab.training import native_adamw
from tunelab.training.bf16_compute import untied_embeddings

MIN_ROWS = 4096  # vocabulary tables; position and token-type tables stay dense


def sparse_tables(model: torch.nn.Module) -> list[torch.nn.Embedding]:
    """The trainable embedding tables with at least ``MIN_ROWS`` rows whose weight no other
    module uses (a table tied to an LM head gets dense gradients from it anyway)."""
    return [
        m
        for m in untied_embeddings(model)
        if m.weight.requires_grad and m.num_embeddings >= MIN_ROWS and m.max_norm is None
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


def _gradients(
    params: Iterable[torch.Tensor], copies: dict[int, torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """The dense gradients and the values of the sparse ones (coalesced in place first:
    duplicate rows summed); a weight with a bf16 compute copy in ``copies`` (by ``id``) has
    its gradient there."""
    grads = []
    for p in params:
        holder = (copies or {}).get(id(p), p)
        if holder.grad is None:
            continue
        if holder.grad.is_sparse:
            holder.grad = holder.grad.coalesce()
            grads.append(holder.grad._values())
        else:
            grads.append(holder.grad)
    return grads


_NATIVE_GRADS = (torch.float32, torch.bfloat16)


def _clip_coef(
    grads: list[torch.Tensor], max_norm: float, kernels: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the gradients' total L2 norm, the factor that clips them to ``max_norm``), as
    ``torch.nn.utils.clip_grad_norm_`` computes them; with ``kernels`` (and tunelab's kernels
    built) the squares are summed in double in one call, bf16 gradients read as they are
    (the norm may then differ from torch's in the last bit)."""
    if not grads:
        return torch.tensor(0.0), torch.tensor(1.0)
    if kernels and native_adamw.available() and all(g.dtype in _NATIVE_GRADS for g in grads):
        total = torch.tensor(math.sqrt(native_adamw.sum_squares(grads)), dtype=torch.float32)
    else:
        total = torch.nn.utils.get_total_norm(grads, 2.0)  # one multi-tensor call
    return total, torch.clamp(max_norm / (total + 1e-6), max=1.0)


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (L2) that also takes sparse gradients; a sparse
    gradient is coalesced in place (duplicate rows summed) first."""
    grads = _gradients(params)
    total, coef = _clip_coef(grads, max_norm)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total


class RowAdamW(torch.optim.AdamW):
    """Fused AdamW that takes sparse gradients.

    A table is updated on its live rows only (rows with a gradient now or a nonzero moment
    from before: every other row has ``exp_avg == exp_avg_sq == 0`` and a zero gradient, so
    AdamW moves it by nothing but the weight decay, applied to the whole table with the
    kernel's own formula) while they are under ``LIVE_SHARE`` of the table; past that,
    gathering and scattering them costs more than the dense kernel, and the gradient goes
    into a dense buffer kept across steps in which only the rows the previous step wrote are
    zeroed again.
    """

    LIVE_SHARE = 0.2

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, fused=True, **kwargs)
        self._live: dict[int, torch.Tensor] = {}  # per table: rows with nonzero moments
        self._dense: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        # 1 / the clip factor for the next step (clip_grad_norm_), read by the fused kernel
        self.grad_scale: torch.Tensor | None = None
        # bf16 compute copies by id(weight) (use_compute_copies): the gradient is theirs
        self._copies: dict[int, torch.Tensor] = {}

    def use_compute_copies(self, pairs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Train fp32 weights from the gradients of their bf16 compute copies (``(weight,
        copy)`` pairs, :class:`tunelab.training.bf16_compute.Bf16Compute` with
        ``copies=True``): each step reads the copy's gradient and writes the updated weight to
        both. Needs tunelab's kernels (:func:`native_adamw.available`)."""
        if not native_adamw.available():
            raise RuntimeError("bf16 compute copies need tunelab's CPU kernels")
        self._copies = {id(p): c for p, c in pairs}
        if not self.native_ok():
            raise ValueError("bf16 compute copies need fp32 contiguous weights")

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for c in self._copies.values():
            if set_to_none:
                c.grad = None
            elif c.grad is not None:
                c.grad.zero_()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._live.clear()  # rebuilt from the loaded moments

    @torch.no_grad()
    def clip_grad_norm_(self, params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        """:func:`clip_grad_norm` with the scaling done by the next :meth:`step`.

        The norm is measured now; the fused AdamW kernel then divides each gradient by
        ``grad_scale`` (1 / the clip factor) as it reads it and writes the clipped gradient
        back (the mechanism ``torch.amp.GradScaler`` uses), so the separate pass over all
        gradients goes (3.6 ms of a ~145 ms bf16 MiniLM step). Sparse gradients' values are
        scaled after the step. The result differs from multiplying by the factor in the last
        bit at most (a division by its reciprocal). The norm includes the bf16 compute
        copies' gradients (:meth:`use_compute_copies`); those are read scaled but not written
        back (nothing reads them before ``zero_grad``).
        """
        total, coef = _clip_coef(_gradients(params, self._copies), max_norm, kernels=True)
        self.grad_scale = (1.0 / coef).float() if float(coef) < 1.0 else None
        return total

    @torch.no_grad()
    def step(self, closure=None):
        try:
            return self._step(closure)
        finally:
            scale, self.grad_scale = self.grad_scale, None
            if scale is not None:  # the clipped sparse gradients, as after clip_grad_norm
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is not None and p.grad.is_sparse:
                            p.grad._values().div_(scale)

    def native_ok(self) -> bool:
        """Whether :meth:`_native_step` applies: tunelab's kernels, plain AdamW, fp32
        contiguous weights."""
        return native_adamw.available() and all(
            not (g["amsgrad"] or g["maximize"] or g.get("capturable") or g.get("differentiable"))
            and all(p.dtype == torch.float32 and p.is_contiguous() for p in g["params"])
            for g in self.param_groups
        )

    def _native_step(self, closure=None):
        """The step through tunelab's kernels (:mod:`native_adamw`): torch's fused AdamW bit
        for bit; tables from their sparse gradient in place, bf16 copies' gradients read and
        the copies written in the same pass."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        scale = float(self.grad_scale) if self.grad_scale is not None else 1.0
        for group in self.param_groups:
            work = []
            for p in group["params"]:
                copy = self._copies.get(id(p))
                grad = (copy if copy is not None else p).grad
                if grad is None:
                    continue
                state = self.state[p]
                if not state:  # torch's AdamW layout (fused: a float32 step tensor)
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                work.append((p, state, grad, copy))
            if not work:
                continue
            steps = [st["step"] for _, st, _, _ in work]
            torch._foreach_add_(steps, 1.0)
            dense: dict[float, list] = {}
            for (p, st, grad, copy), step in zip(work, torch.stack(steps).tolist(), strict=True):
                m, v = st["exp_avg"], st["exp_avg_sq"]
                if grad.is_sparse:
                    grad = grad.coalesce()
                    live = self._live_rows(p)
                    ids, vals = grad._indices()[0].contiguous(), grad._values()
                    vals = vals.to(p.dtype).contiguous()
                    native_adamw.rows_step(group, p, m, v, ids, vals, live, step, scale)
                else:
                    dense.setdefault(step, []).append((p, m, v, grad.contiguous(), copy))
            for step, items in dense.items():
                native_adamw.dense_step(group, items, step, scale)
        return loss

    def _step(self, closure=None):
        if self.native_ok():
            return self._native_step(closure)
        held, by_rows = [], []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or not p.grad.is_sparse:
                    continue
                held.append((p, p.grad))
                ids, vals, live = self._gradient(p, p.grad)
                if live.sum() < self.LIVE_SHARE * live.numel():
                    by_rows.append((group, p, ids, vals, live))
                    p.grad = None
                else:
                    p.grad = self._dense_buffer(p, ids, vals)
        try:
            loss = super().step(closure)
        finally:
            for p, g in held:
                p.grad = g
        for args in by_rows:
            self._rows_step(*args)
        return loss

    def _live_rows(self, p: torch.Tensor) -> torch.Tensor:
        """The table's rows with nonzero moments (bool per row), kept across steps."""
        live = self._live.get(id(p))
        if live is None:
            state = self.state[p]
            live = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
            if state:
                live |= (state["exp_avg"] != 0).flatten(1).any(1)
                live |= (state["exp_avg_sq"] != 0).flatten(1).any(1)
            self._live[id(p)] = live
        return live

    def _gradient(self, p: torch.Tensor, grad: torch.Tensor):
        """(rows, their gradient, the live-row mask with them marked)."""
        grad = grad.coalesce()
        ids, vals = grad._indices()[0], grad._values().to(p.dtype)
        live = self._live_rows(p)
        live[ids] = True
        return ids, vals, live

    def _dense_buffer(self, p: torch.Tensor, ids: torch.Tensor, vals: torch.Tensor):
        buf, last = self._dense.get(id(p), (None, None))
        if buf is None:
            buf = torch.zeros_like(p, memory_format=torch.contiguous_format)
        elif last is not None:
            buf.index_fill_(0, last, 0.0)
        buf.index_copy_(0, ids, vals)
        self._dense[id(p)] = (buf, ids)
        return buf

    def _rows_step(self, group: dict, p: torch.Tensor, ids, vals, live) -> None:
        if group["amsgrad"] or group["maximize"]:
            raise ValueError("RowAdamW supports neither amsgrad nor maximize")
        state = self.state[p]
        if not state:  # torch's AdamW layout (fused: a float32 step tensor)
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        rows = live.nonzero().squeeze(1)
        g_rows = torch.zeros((rows.numel(), *p.shape[1:]), dtype=p.dtype, device=p.device)
        g_rows[torch.searchsorted(rows, ids)] = vals
        p_rows, m_rows, v_rows = p.index_select(0, rows), m[rows], v[rows]
        lr = float(group["lr"])
        if group["weight_decay"]:  # the kernel's formula, bit for bit
            p.mul_(1 - lr * group["weight_decay"])
        state["step"] += 1
        torch._fused_adamw_(
            [p_rows],
            [g_rows],
            [m_rows],
            [v_rows],
            [],
            [state["step"]],
            lr=lr,
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            amsgrad=False,
            maximize=False,
            grad_scale=self.grad_scale,
        )
        p.index_copy_(0, rows, p_rows)
        m.index_copy_(0, rows, m_rows)
        v.index_copy_(0, rows, v_rows)
