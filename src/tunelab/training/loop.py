"""The training loop: AdamW, a warm-up + decay schedule, gradient accumulation, mixed precision,
periodic evaluation, early stopping, checkpoints that survive a crash, and the best weights
restored at the end. Short enough to read in one sitting; no trainer class hierarchy."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from tunelab.data.batching import collate, length_grouped_batches, output_logits
from tunelab.training import checkpoint
from tunelab.training.checkpoint import LoopState
from tunelab.training.distributed import Dist
from tunelab.training.robust import EmbeddingAttack, rdrop_divergence

SCHEDULERS = ("linear", "cosine", "constant")


@dataclass
class LoopSettings:
    epochs: float
    batch_size: int               # examples per forward pass (micro-batch)
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    eval_steps: int | None
    patience: int | None
    metric: str
    seed: int
    greater_is_better: bool = True
    progress: bool = True
    log_every: int = 10
    gradient_accumulation_steps: int = 1   # micro-batches per optimizer step
    lr_scheduler: str = "linear"
    precision: str = "fp32"                # fp32 | bf16 | fp16 (resolved, never "auto")
    save_steps: int | None = None          # checkpoint every N optimizer steps (and per epoch)
    save_total_limit: int = 2
    checkpoint_dir: Path | None = None     # None: no checkpoints
    checkpoint_config: str = ""            # the run's config.yaml, stored in each checkpoint
    resume_from: Path | None = None
    # against overfitting (tunelab.training.robust)
    rdrop_alpha: float = 0.0               # R-Drop weight; 0 = off
    rdrop_keep: Callable[[torch.Tensor], torch.Tensor] | None = None  # per-token: which count
    adversarial: str | None = None         # fgm | pgd
    adv_epsilon: float = 1.0
    adv_steps: int = 3
    adv_alpha: float = 0.3


@dataclass
class LoopResult:
    best_metric: float | None
    best_step: int
    best_epoch: float
    steps: int
    stopped_early: bool
    train_seconds: float
    examples_seen: int
    history: list[dict]


class Interrupted(Exception):
    """Ctrl-C during training; ``checkpoint`` is where the run can resume from (or None)."""

    def __init__(self, step: int, path: Path | None) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step, self.checkpoint = step, path


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation weights (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _adamw(model: torch.nn.Module, s: LoopSettings) -> torch.optim.Optimizer:
    """AdamW with the fused kernel (one pass over all parameters: on the 2-core CPU it cut the
    optimizer's share of a MiniLM step from ~15% to ~3%), else the multi-tensor one."""
    groups = _param_groups(model, s.weight_decay)
    try:
        return torch.optim.AdamW(groups, lr=s.learning_rate, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=s.learning_rate, foreach=True)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def count_examples(targets: torch.Tensor) -> int:
    return int(targets.shape[0])


def plan_steps(n_examples: int, batch_size: int, accumulation: int, world: int,
               epochs: float) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps): each step takes
    batch_size * accumulation * world examples."""
    per_epoch = math.ceil(n_examples / (batch_size * accumulation * world))
    return per_epoch, max(1, math.ceil(epochs * per_epoch))


def _fault_injection() -> tuple[int, int] | None:
    """``TUNELAB_FAULT=kill@7`` (or ``int@7``) sends this process SIGKILL (SIGINT) after step
    7: how the crash and Ctrl-C tests interrupt a real run at a known point."""
    spec = os.environ.get("TUNELAB_FAULT", "")
    if "@" not in spec:
        return None
    kind, step = spec.split("@", 1)
    return (signal.SIGKILL if kind == "kill" else signal.SIGINT), int(step)


def fit(model: torch.nn.Module, ids: list[list[int]], labels: list, pad_id: int,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        evaluate: Callable[[], dict], s: LoopSettings,
        log: Callable[[dict], None],
        collate_targets: Callable[[list], torch.Tensor] = torch.tensor,
        after_step: Callable[[int], None] | None = None,
        regularizer: Callable[[], torch.Tensor] | None = None,
        loss_units: Callable[[torch.Tensor], int] = count_examples,
        dist: Dist | None = None) -> LoopResult:
    """Train ``model`` in place and leave it holding the best validation weights.

    Args:
        ids: token ids per training example; labels: target per example (class index or
            number, whatever the task's ``loss_fn`` expects).
        loss_fn: mean loss of a micro-batch over its ``loss_units`` (examples, or labelled
            tokens for per-token tasks).
        evaluate: returns validation metrics (a dict holding ``s.metric``).
        log: receives one dict per logged event (train loss, evaluation); events replayed
            from a checkpoint carry ``"replayed": True``.
        collate_targets: batches targets into a tensor (token tasks pad per-position labels).
        after_step: the method's hook after each optimizer step, given the 0-based step
            (AdaLoRA's rank allocation needs the gradients, so it runs before zero_grad).
        regularizer: the method's extra loss term (AdaLoRA's orthogonality penalty).
        loss_units: how many units a micro-batch's mean loss is over. With accumulation each
            micro-batch's loss is weighted by its share of the step's units, so K micro-batches
            of B give the update of one batch of K*B (not a mean of per-micro-batch means).
        dist: the process group; with W processes every optimizer step takes a batch of
            B*K*W, each process its round-robin share, and the loss weights use the units of
            all processes, so W processes give the update of one process with batch B*K*W.
    Returns:
        LoopResult with the best metric, where it was reached, and the full history.
    Raises:
        Interrupted: on Ctrl-C, after saving a checkpoint when checkpoints are on.
    """
    from transformers import get_scheduler

    dist = dist or Dist()
    device = next(model.parameters()).device
    lengths = [len(x) for x in ids]
    per_step = s.batch_size * s.gradient_accumulation_steps * dist.world
    steps_per_epoch, total = plan_steps(len(ids), s.batch_size, s.gradient_accumulation_steps,
                                        dist.world, s.epochs)
    opt = _adamw(model, s)
    sched = get_scheduler(s.lr_scheduler if s.lr_scheduler != "constant"
                          else "constant_with_warmup", opt,
                          num_warmup_steps=round(s.warmup_ratio * total),
                          num_training_steps=total)
    scaler = torch.amp.GradScaler(device.type, enabled=s.precision == "fp16")
    st, best = LoopState(), None
    if s.resume_from is not None:
        st, best = checkpoint.load(s.resume_from, model, opt, sched)
        for event in st.history:
            log({**event, "replayed": True})
    trainable = [p for p in model.parameters() if p.requires_grad]
    forward = dist.wrap(model)  # DistributedDataParallel across processes
    attack = EmbeddingAttack(model, s.adversarial, s.adv_epsilon, s.adv_steps,
                             s.adv_alpha) if s.adversarial else None
    eval_seconds = 0.0  # excluded from training throughput
    t0, seconds_before = time.perf_counter(), st.train_seconds

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - t0 - eval_seconds

    def run_eval(epoch: float) -> bool:
        """Evaluate, keep the best weights; returns True when early stopping triggers."""
        nonlocal best, eval_seconds
        t_eval = time.perf_counter()
        metrics = evaluate()
        eval_seconds += time.perf_counter() - t_eval
        value = metrics[s.metric]
        event = {"type": "eval", "step": st.step, "epoch": round(epoch, 4),
                 **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        st.history.append(event)
        log(event)
        better = value is not None and (st.best_metric is None or (
            value > st.best_metric if s.greater_is_better else value < st.best_metric))
        if better:
            st.best_metric, st.best_step, st.best_epoch = value, st.step, epoch
            # only trainable tensors change; copying them is enough to restore the best model
            best = {n: p.detach().clone() for n, p in model.named_parameters()
                    if p.requires_grad}
            st.bad_evals = 0
        else:
            st.bad_evals += 1
        return bool(s.patience) and st.bad_evals >= s.patience  # type: ignore[operator]

    def save_checkpoint() -> Path | None:
        if s.checkpoint_dir is None:
            return None
        st.train_seconds = elapsed()
        return checkpoint.save(s.checkpoint_dir, model, opt, sched, st, best, s.save_total_limit,
                               s.checkpoint_config)

    fault = _fault_injection()
    # Ctrl-C: finish the current step, save a checkpoint, stop; a second Ctrl-C stops at once
    interrupted = False

    def on_sigint(signum, frame) -> None:
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    model.train()
    bar = tqdm(total=total, initial=st.step, disable=not s.progress, desc="training",
               unit="step", dynamic_ncols=True, leave=False)
    stop = False
    try:
        while st.step < total and not stop:
            batches = length_grouped_batches(lengths, per_step, seed=s.seed + st.epoch)
            for big in batches[st.batch_in_epoch:]:
                mine = big[dist.rank::dist.world]
                # a process with no example left in a short last batch still joins the
                # gradient all-reduce, with a zero-weighted example
                weight = 1.0 if mine else 0.0
                mine = mine or big[:1]
                micro = [mine[j:j + s.batch_size] for j in range(0, len(mine), s.batch_size)]
                targets = [collate_targets([labels[i] for i in mb]) for mb in micro]
                units = [loss_units(t) * weight for t in targets]
                # DDP averages gradients over processes: scale by world / all processes' units
                n_units = max(1.0, dist.all_sum(sum(units))) / dist.world
                step_loss = 0.0
                for mb, tgt, n in zip(micro, targets, units):
                    inputs = {k: v.to(device) for k, v in collate([ids[i] for i in mb],
                                                                  pad_id).items()}
                    tgt, share = tgt.to(device), n / n_units

                    def batch_loss() -> tuple[torch.Tensor, torch.Tensor]:
                        with _autocast(device, s.precision):
                            logits = output_logits(forward(**inputs))  # (B, K) or (B, T, K)
                        return logits, loss_fn(logits.float(), tgt)

                    with attack.capture() if attack else contextlib.nullcontext():
                        logits, loss = batch_loss()
                        if s.rdrop_alpha:  # a second pass with other dropout masks
                            logits2, loss2 = batch_loss()
                            keep = s.rdrop_keep(tgt) if s.rdrop_keep else None
                            loss = 0.5 * (loss + loss2) + s.rdrop_alpha * rdrop_divergence(
                                logits, logits2, keep)
                        loss = loss * share
                        part = loss + regularizer() / len(micro) if regularizer else loss
                        scaler.scale(part).backward()
                    if attack:  # the same batch again on adversarial embeddings
                        adv = attack.loss(lambda: batch_loss()[1] * share,
                                          inputs["attention_mask"])
                        scaler.scale(adv).backward()
                    step_loss += loss.item()
                step_loss = dist.all_sum(step_loss) / dist.world  # the global batch's loss
                if s.max_grad_norm > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(trainable, s.max_grad_norm)
                scaler.step(opt)
                scaler.update()
                sched.step()
                if after_step:
                    after_step(st.step)
                opt.zero_grad(set_to_none=True)
                st.step += 1
                st.batch_in_epoch += 1
                st.examples_seen += len(big)
                st.running_loss += step_loss
                st.running_steps += 1
                bar.update(1)
                if st.step % s.log_every == 0 or st.step == total:
                    event = {"type": "train", "step": st.step,
                             "epoch": round(st.step / steps_per_epoch, 4),
                             "loss": st.running_loss / st.running_steps,
                             "learning_rate": sched.get_last_lr()[0],
                             "examples_per_s": st.examples_seen / max(elapsed(), 1e-9)}
                    st.history.append(event)
                    log(event)
                    bar.set_postfix(loss=f"{event['loss']:.4f}",
                                    ex_s=f"{event['examples_per_s']:.1f}")
                    st.running_loss, st.running_steps = 0.0, 0
                epoch_end = st.batch_in_epoch == len(batches)
                if epoch_end or st.step == total or (s.eval_steps and st.step % s.eval_steps == 0):
                    stop = run_eval(st.step / steps_per_epoch)
                    model.train()
                if epoch_end:
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                if st.step < total and not stop and (
                        epoch_end or (s.save_steps and st.step % s.save_steps == 0)):
                    save_checkpoint()
                if fault and fault[1] == st.step:
                    os.kill(os.getpid(), fault[0])
                # every process stops at the same step, or the others would wait forever
                if dist.all_sum(float(interrupted)) > 0 and st.step < total:
                    bar.close()
                    raise Interrupted(st.step, save_checkpoint())
                if stop or st.step >= total:
                    break
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if attack:
            attack.close()
    bar.close()
    if best is not None:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for n, v in best.items():
                params[n].copy_(v)
    return LoopResult(st.best_metric, st.best_step, st.best_epoch, st.step,
                      stop and st.step < total, elapsed(), st.examples_seen, st.history)
