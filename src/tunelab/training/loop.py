"""The training loop: AdamW, linear warm-up then decay, periodic evaluation, early stopping and
restoring the best weights. Short enough to read in one sitting; no trainer class hierarchy."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from tunelab.data.batching import collate, length_grouped_batches, output_logits


@dataclass
class LoopSettings:
    epochs: float
    batch_size: int
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


@dataclass
class LoopResult:
    best_metric: float | None = None
    best_step: int = 0
    best_epoch: float = 0.0
    steps: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    examples_seen: int = 0
    history: list[dict] = field(default_factory=list)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation weights (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def fit(model: torch.nn.Module, ids: list[list[int]], labels: list, pad_id: int,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        evaluate: Callable[[], dict], s: LoopSettings,
        log: Callable[[dict], None],
        collate_targets: Callable[[list], torch.Tensor] = torch.tensor,
        after_step: Callable[[int], None] | None = None,
        regularizer: Callable[[], torch.Tensor] | None = None) -> LoopResult:
    """Train ``model`` in place and leave it holding the best validation weights.

    Args:
        ids: token ids per training example; labels: target per example (class index or
            number, whatever the task's ``loss_fn`` expects).
        evaluate: returns validation metrics (a dict holding ``s.metric``).
        log: receives one dict per logged event (train loss, evaluation).
        collate_targets: batches targets into a tensor (token tasks pad per-position labels).
        after_step: the method's hook after each optimizer step, given the 0-based step
            (AdaLoRA's rank allocation needs the gradients, so it runs before zero_grad).
        regularizer: the method's extra loss term (AdaLoRA's orthogonality penalty).
    Returns:
        LoopResult with the best metric, where it was reached, and the full history.
    """
    from transformers import get_linear_schedule_with_warmup

    device = next(model.parameters()).device
    lengths = [len(x) for x in ids]
    steps_per_epoch = math.ceil(len(ids) / s.batch_size)
    total = max(1, math.ceil(s.epochs * steps_per_epoch))
    opt = torch.optim.AdamW(_param_groups(model, s.weight_decay), lr=s.learning_rate,
                            foreach=True)
    sched = get_linear_schedule_with_warmup(opt, round(s.warmup_ratio * total), total)
    res = LoopResult()
    best_state: dict[str, torch.Tensor] | None = None
    bad_evals = 0
    eval_seconds = 0.0  # excluded from training throughput

    def run_eval(step: int, epoch: float) -> bool:
        """Evaluate, keep the best weights; returns True when early stopping triggers."""
        nonlocal best_state, bad_evals, eval_seconds
        t_eval = time.perf_counter()
        metrics = evaluate()
        eval_seconds += time.perf_counter() - t_eval
        value = metrics[s.metric]
        event = {"type": "eval", "step": step, "epoch": round(epoch, 4),
                 **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        res.history.append(event)
        log(event)
        better = value is not None and (res.best_metric is None or (
            value > res.best_metric if s.greater_is_better else value < res.best_metric))
        if better:
            res.best_metric, res.best_step, res.best_epoch = value, step, epoch
            # only trainable tensors change; copying them is enough to restore the best model
            best_state = {n: p.detach().clone() for n, p in model.named_parameters()
                          if p.requires_grad}
            bad_evals = 0
        else:
            bad_evals += 1
        return bool(s.patience) and bad_evals >= s.patience  # type: ignore[operator]

    model.train()
    bar = tqdm(total=total, disable=not s.progress, desc="training", unit="step",
               dynamic_ncols=True, leave=False)
    step, epoch_i, running, n_run, t0 = 0, 0, 0.0, 0, time.perf_counter()
    stop = False
    while step < total and not stop:
        for batch in length_grouped_batches(lengths, s.batch_size, seed=s.seed + epoch_i):
            inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id).items()}
            logits = output_logits(model(**inputs))  # (B, num_labels), (B, T, K) per token
            # int64 class ids, float32 numbers, or (B, T) per-token ids
            loss = loss_fn(logits, collate_targets([labels[i] for i in batch]).to(device))
            objective = loss + regularizer() if regularizer else loss
            objective.backward()
            if s.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], s.max_grad_norm)
            opt.step()
            sched.step()
            if after_step:
                after_step(step)
            opt.zero_grad(set_to_none=True)
            step += 1
            res.examples_seen += len(batch)
            running, n_run = running + loss.item(), n_run + 1
            elapsed = time.perf_counter() - t0 - eval_seconds
            bar.update(1)
            if step % s.log_every == 0 or step == total:
                event = {"type": "train", "step": step, "epoch": round(step / steps_per_epoch, 4),
                         "loss": running / n_run, "learning_rate": sched.get_last_lr()[0],
                         "examples_per_s": res.examples_seen / max(elapsed, 1e-9)}
                res.history.append(event)
                log(event)
                bar.set_postfix(loss=f"{running / n_run:.4f}",
                                ex_s=f"{event['examples_per_s']:.1f}")
                running, n_run = 0.0, 0
            epoch_end = step % steps_per_epoch == 0
            if (s.eval_steps and step % s.eval_steps == 0 and not epoch_end) or \
                    (epoch_end or step == total):
                stop = run_eval(step, step / steps_per_epoch)
                model.train()
            if stop or step >= total:
                break
        epoch_i += 1
    bar.close()
    res.steps = step
    res.stopped_early = stop and step < total
    res.train_seconds = time.perf_counter() - t0 - eval_seconds
    if best_state is not None:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for n, v in best_state.items():
                params[n].copy_(v)
    return res
