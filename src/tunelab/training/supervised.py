"""One optimizer step of supervised fine-tuning, as a :class:`~tunelab.training.loop.Job`:
AdamW, a warm-up + decay schedule, gradient accumulation, mixed precision, data-parallel
weighting, and the regularisers that need the batch (R-Drop, FGM/PGD). On a CPU, bf16 runs
on bf16 copies of the fp32 weights (:mod:`tunelab.training.bf16_compute`), dropout masks come
from :mod:`tunelab.training.fast_dropout` (15% of a bf16 MiniLM step saved) and PEFT's LoRA
layers are fused (:mod:`tunelab.training.fused_lora`).

Batches are length-grouped token ids (most of a CPU's training time otherwise goes to padding),
or, for a decoder's sequence head, random batches packed into rows
(:mod:`tunelab.training.packing`: no padding, and each step sees what a plain Trainer's random
batch shows); with accumulation each micro-batch's mean loss is weighted by its share of the
step's units (examples, or labelled tokens), so K micro-batches of B give the update of one batch
of K*B (not a mean of per-micro-batch means); with W processes each takes a round-robin share of
a batch of B*K*W and the weights use every process's units.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from tunelab.data.batching import (
    collate,
    length_grouped_batches,
    output_logits,
    response_window,
)
from tunelab.training import bf16_compute, packing
from tunelab.training.distributed import Dist
from tunelab.training.fast_dropout import faster_dropout
from tunelab.training.fast_layers import faster_layers
from tunelab.training.fused_lora import fused_lora
from tunelab.training.loop import Job, plan_steps
from tunelab.training.robust import EmbeddingAttack, rdrop_divergence
from tunelab.training.row_adamw import RowAdamW, sparse_gradients, sparse_tables


@dataclass
class StepSettings:
    batch_size: int  # examples per forward pass (micro-batch)
    learning_rate: float
    epochs: float = 1.0  # for the schedule's length
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0  # 0 disables clipping
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    lr_scheduler: str = "linear"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (resolved, never "auto")
    seed: int = 42  # batch order: epoch e uses seed + e
    # length-grouped: similar lengths per batch (little padding); random: as a plain Trainer
    # draws them; packed: random batches laid end to end in rows (decoder sequence heads only,
    # see tunelab.training.packing)
    batching: str = "length-grouped"
    # against overfitting (tunelab.training.robust)
    rdrop_alpha: float = 0.0  # R-Drop weight; 0 = off
    rdrop_keep: Callable[[torch.Tensor], torch.Tensor] | None = None  # per-token: which count
    adversarial: str | None = None  # fgm | pgd
    adv_epsilon: float = 1.0
    adv_steps: int = 3
    adv_alpha: float = 0.3
    # causal LM targets (generation): the vocabulary projection runs only from the first
    # position that predicts a target token (the prompt's positions have none to predict)
    response_logits_only: bool = False


def count_examples(targets: torch.Tensor) -> int:
    return int(targets.shape[0])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation weights (the usual BERT recipe)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def adamw(
    model: torch.nn.Module, lr: float, weight_decay: float, rows: bool = False
) -> torch.optim.Optimizer:
    """AdamW with the fused kernel (one pass over all parameters: on the 2-core CPU it cut the
    optimizer's share of a MiniLM step from ~15% to ~3%), else the multi-tensor one; with
    ``rows``, :class:`RowAdamW` (which also takes the sparse gradients of vocabulary tables)."""
    groups = _param_groups(model, weight_decay)
    if rows:
        return RowAdamW(groups, lr=lr)
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, foreach=True)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def supervised_job(
    model: torch.nn.Module,
    ids: list[list[int]],
    labels: list,
    pad_id: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    s: StepSettings,
    collate_targets: Callable[[list], torch.Tensor] = torch.tensor,
    after_step: Callable[[int], None] | None = None,
    regularizer: Callable[[], torch.Tensor] | None = None,
    loss_units: Callable[[torch.Tensor], int] | None = None,
    dist: Dist | None = None,
    rotate: tuple[int, int] | None = None,
) -> Job:
    """The job that fine-tunes ``model`` on (``ids``, ``labels``).

    Args:
        loss_fn: mean loss of a micro-batch over its ``loss_units`` (default: its examples;
            a task's ``loss_units`` counts tokens instead).
        collate_targets: batches targets into a tensor (token tasks pad per-position labels).
        after_step: the method's hook after each optimizer step, given the 0-based step
            (AdaLoRA's rank allocation needs the gradients, so it runs before zero_grad).
        regularizer: the method's extra loss term (AdaLoRA's orthogonality penalty).
        dist: the process group (DDP across processes).
        rotate: ``(fixed, per_epoch)``: every epoch trains on the first ``fixed`` rows and on
            ``per_epoch`` of the rows after them, a different block each epoch in turn
            (continual replay: more earlier examples seen at the cost of ``per_epoch``).
    """
    from transformers import get_scheduler

    dist = dist or Dist()
    loss_units = loss_units or count_examples
    device = next(model.parameters()).device
    lengths = [len(x) for x in ids]
    # single-label classification (a class id per example): batches keep the class mix
    strata = [int(y) for y in labels] if all(_is_class_id(y) for y in labels) else None
    per_step = s.batch_size * s.gradient_accumulation_steps * dist.world
    steps_per_epoch, total = plan_steps(
        epoch_rows(len(ids), rotate),
        s.batch_size,
        s.gradient_accumulation_steps,
        dist.world,
        s.epochs,
    )
    # vocabulary tables get sparse gradients (tunelab.training.row_adamw); DDP and fp16's
    # grad scaler keep dense ones
    tables = sparse_tables(model) if dist.world == 1 and s.precision != "fp16" else []
    opt = adamw(model, s.learning_rate, s.weight_decay, rows=bool(tables))
    sched = get_scheduler(
        s.lr_scheduler if s.lr_scheduler != "constant" else "constant_with_warmup",
        opt,
        num_warmup_steps=round(s.warmup_ratio * total),
        num_training_steps=total,
    )
    scaler = torch.amp.GradScaler(device.type, enabled=s.precision == "fp16")
    trainable = [p for p in model.parameters() if p.requires_grad]
    wrapped = dist.wrap(model)  # DistributedDataParallel across processes
    forward: Callable[..., Any] = wrapped
    amp = s.precision  # autocast's precision
    if bf16_compute.applies(model, s.precision, device):  # bf16 activations, fp32 weights
        keep = _keep_copies(opt, s, dist, after_step, regularizer)
        compute = bf16_compute.Bf16Compute(wrapped, copies=keep)
        if compute.kept and isinstance(opt, RowAdamW):  # it reads their gradients, writes them
            opt.use_compute_copies(compute.pairs())
        forward, amp = compute, "fp32"
    attack = (
        EmbeddingAttack(model, s.adversarial, s.adv_epsilon, s.adv_steps, s.adv_alpha)
        if s.adversarial
        else None
    )
    if s.batching == "packed" and not packing.applies(model, adversarial=bool(s.adversarial)):
        raise ValueError("packed batches need a decoder sequence head and a per-token method")
    scores = packing.PackedScores(model) if s.batching == "packed" else None
    head = ContiguousHead(model)

    def batch_loss(
        inputs: dict, tgt: torch.Tensor, ends: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cpu = device.type == "cpu"
        if s.response_logits_only and not scores and s.rdrop_alpha == 0:
            inputs, tgt = response_window(inputs, tgt)
        with (
            autocast(device, amp),
            faster_dropout(cpu),
            faster_layers(cpu),
            fused_lora(cpu),
            sparse_gradients(tables),
        ):
            out = forward(**inputs)
            # (B, K) or (B, T, K); packed rows: the head's scores at each text's last token
            logits = scores.take(ends) if scores and ends is not None else output_logits(out)
        return logits, loss_fn(logits.float(), tgt)

    def step(big: list[int], index: int) -> float:
        mine = big[dist.rank :: dist.world]
        # a process with no example left in a short last batch still joins the gradient
        # all-reduce, with a zero-weighted example
        weight = 1.0 if mine else 0.0
        mine = mine or big[:1]
        micro = [mine[j : j + s.batch_size] for j in range(0, len(mine), s.batch_size)]
        targets = [collate_targets([labels[i] for i in mb]) for mb in micro]
        units = [loss_units(t) * weight for t in targets]
        # DDP averages gradients over processes: scale by world / all processes' units
        n_units = max(1.0, dist.all_sum(sum(units))) / dist.world
        step_loss = 0.0
        for mb, tgt, n in zip(micro, targets, units, strict=True):
            seqs = [ids[i] for i in mb]
            ends = None
            if scores:
                inputs, ends = packing.collate_packed(seqs, pad_id)
            else:
                inputs = collate(seqs, pad_id)
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            tgt, share = tgt.to(device), n / n_units
            with attack.capture() if attack else contextlib.nullcontext():
                logits, loss = batch_loss(inputs, tgt, ends)
                if s.rdrop_alpha:  # a second pass with other dropout masks
                    logits2, loss2 = batch_loss(inputs, tgt, ends)
                    keep = s.rdrop_keep(tgt) if s.rdrop_keep else None
                    loss = 0.5 * (loss + loss2) + s.rdrop_alpha * rdrop_divergence(
                        logits, logits2, keep
                    )
                loss = loss * share
                part = loss + regularizer() / len(micro) if regularizer else loss
                scaler.scale(part).backward()
            if attack:  # the same batch again on adversarial embeddings

                def adv_loss(
                    i: dict = inputs, t: torch.Tensor = tgt, sh: float = share
                ) -> torch.Tensor:
                    return batch_loss(i, t)[1] * sh

                adv = attack.loss(adv_loss, inputs["attention_mask"])
                scaler.scale(adv).backward()
            step_loss += loss.item()
        if s.max_grad_norm > 0:
            scaler.unscale_(opt)
            if isinstance(opt, RowAdamW):  # scaled inside its fused step
                opt.clip_grad_norm_(trainable, s.max_grad_norm)
            else:
                torch.nn.utils.clip_grad_norm_(trainable, s.max_grad_norm)
        scaler.step(opt)
        scaler.update()
        sched.step()
        if after_step:
            after_step(index)
        opt.zero_grad(set_to_none=True)
        return dist.all_sum(step_loss) / dist.world  # the global batch's loss

    return Job(
        model=model,
        step=step,
        steps_per_epoch=steps_per_epoch,
        batches=partial(
            _epoch_batches,
            lengths,
            per_step,
            s.seed,
            s.batching == "length-grouped",
            strata,
            rotate=rotate,
        ),
        optimizers=[opt],
        schedulers=[sched],
        learning_rate=lambda: sched.get_last_lr()[0],
        close=partial(_close, attack, scores, head),
    )


def _keep_copies(
    opt: torch.optim.Optimizer,
    s: StepSettings,
    dist: Dist,
    after_step: Callable[[int], None] | None,
    regularizer: Callable[[], torch.Tensor] | None,
) -> bool:
    """Whether bf16 compute copies are kept between steps (``Bf16Compute(copies=True)``):
    RowAdamW on tunelab's kernels, and exactly one backward pass per step into gradients
    nothing else reads or adds to (no accumulation over micro-batches or processes, no second
    pass of R-Drop or adversarial training, no method hook on the gradients, no regularizer:
    EWC's penalty reaches the fp32 weights themselves, past the copies)."""
    return (
        isinstance(opt, RowAdamW)
        and opt.native_ok()
        and s.gradient_accumulation_steps == 1
        and dist.world == 1
        and not s.rdrop_alpha
        and not s.adversarial
        and after_step is None
        and regularizer is None
    )


def run_stage(
    model: torch.nn.Module,
    ids: list[list[int]],
    labels: list,
    pad_id: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    settings: dict,
    collate_targets: Callable[[list], torch.Tensor] = torch.tensor,
) -> tuple[int, float]:
    """Train ``model`` in place for ``settings["epochs"]`` over (``ids``, ``labels``) with the
    usual step (``settings``: :class:`StepSettings` fields), with no evaluation, checkpoints
    or best-weights restoring: a method's own stage (SetFit's contrastive training). Returns
    (steps, mean loss)."""
    job = supervised_job(
        model, ids, labels, pad_id, loss_fn, StepSettings(**settings), collate_targets
    )
    total = max(1, int(np.ceil(settings.get("epochs", 1.0) * job.steps_per_epoch)))
    model.train()
    steps, loss = 0, 0.0
    try:
        epoch = 0
        while steps < total:
            for batch in job.batches(epoch):
                if steps >= total:
                    break
                loss += job.step(batch, steps)
                steps += 1
            epoch += 1
    finally:
        if job.close is not None:
            job.close()
    return steps, loss / max(steps, 1)


class ContiguousHead:
    """Hands the LM head a contiguous input while training. A causal LM asked for the
    logits of the last positions only (``logits_to_keep``, :func:`response_window`) slices its
    hidden states into a strided view; for an input that needs a gradient, ``matmul`` then
    broadcasts the (vocabulary x hidden) weight to one copy per sequence instead of folding the
    batch: Gemma's 262k-word head became a 16 x 640 x 262,144 copy, 90% of a bf16 step's time
    (15 s against 1.x s) and gigabytes of memory. A copy of the small input avoids it."""

    def __init__(self, model: torch.nn.Module) -> None:
        get = getattr(model, "get_output_embeddings", None)
        out = get() if callable(get) else None
        self.hook = (
            out.register_forward_pre_hook(_contiguous) if isinstance(out, torch.nn.Linear) else None
        )

    def close(self) -> None:
        if self.hook is not None:
            self.hook.remove()
            self.hook = None


def _contiguous(_module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)


def _close(*hooks: EmbeddingAttack | packing.PackedScores | ContiguousHead | None) -> None:
    for h in hooks:
        if h is not None:
            h.close()


def _is_class_id(y) -> bool:
    return isinstance(y, int | np.integer) and not isinstance(y, bool)


def epoch_rows(n: int, rotate: tuple[int, int] | None) -> int:
    """Rows one epoch trains on (see ``supervised_job``'s ``rotate``)."""
    return n if rotate is None else rotate[0] + min(rotate[1], n - rotate[0])


def rotation(n: int, fixed: int, per_epoch: int, epoch: int) -> list[int]:
    """The rows of ``epoch``: all of the first ``fixed``, then ``per_epoch`` of the others,
    the block after the previous epoch's (wrapping round)."""
    pool = n - fixed
    if pool <= 0:
        return list(range(fixed))
    start = epoch * per_epoch
    return list(range(fixed)) + [fixed + (start + j) % pool for j in range(min(per_epoch, pool))]


def _epoch_batches(
    lengths: list[int],
    per_step: int,
    seed: int,
    grouped: bool,
    strata: list[int] | None,
    epoch: int,
    rotate: tuple[int, int] | None = None,
) -> list[list[int]]:
    rows = rotation(len(lengths), *rotate, epoch) if rotate else None
    if rows is not None:
        lengths = [lengths[i] for i in rows]
        strata = [strata[i] for i in rows] if strata else None
    if not grouped:
        batches = length_grouped_batches(lengths, per_step, seed=seed + epoch, group=1)
    else:
        batches = length_grouped_batches(lengths, per_step, seed=seed + epoch, strata=strata)
    return batches if rows is None else [[rows[j] for j in b] for b in batches]
