"""The training loop: steps over epochs, periodic evaluation, early stopping, the best weights
restored at the end. Short enough to read in one sitting; no trainer class hierarchy.

What one optimizer step does is the caller's (a :class:`Job`: supervised fine-tuning in
:mod:`tunelab.training.supervised`, and equally a music model with two optimizers or a
contrastive retriever); checkpoints, Ctrl-C and progress display are callbacks
(:mod:`tunelab.training.callbacks`), so every job gets resume and interruption for free.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunelab.training import checkpoint
from tunelab.training.checkpoint import LoopState


@dataclass
class Job:
    """What trains and how one optimizer step goes.

    ``model`` holds every trainable tensor (a ``ModuleDict`` for several networks);
    ``step(batch, index)`` runs optimizer step ``index`` (0-based, counted across a resume)
    on ``batch`` and returns its loss;
    ``batches(epoch)`` gives an epoch's batches in a deterministic order (a resumed run skips
    the ones already done); ``steps_per_epoch`` is their count. The optimizers and schedulers
    are saved in checkpoints and restored on resume.
    """

    model: torch.nn.Module
    step: Callable[[Any, int], float]
    batches: Callable[[int], Iterable[Any]]
    steps_per_epoch: int
    optimizers: Sequence[torch.optim.Optimizer]
    schedulers: Sequence[Any] = ()
    batch_examples: Callable[[Any], int] = len
    learning_rate: Callable[[], float] | None = None
    close: Callable[[], None] | None = None  # release hooks when the loop ends


@dataclass
class LoopSettings:
    epochs: float
    metric: str  # validation metric that picks the best weights
    greater_is_better: bool = True
    eval_steps: int | None = None  # also evaluate every N steps (always per epoch)
    patience: int | None = None  # early stopping after N evaluations without gain
    log_every: int = 10
    resume_from: Path | None = None


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


@dataclass
class Loop:
    """The running loop as callbacks see it."""

    job: Job
    settings: LoopSettings
    total_steps: int
    state: LoopState = field(default_factory=LoopState)
    best: dict[str, torch.Tensor] | None = None  # the best trainable weights so far
    epoch_end: bool = False  # the step just done ended an epoch
    stopping: bool = False  # early stopping triggered
    last_event: dict | None = None  # the latest train event
    started: float = field(default_factory=time.perf_counter)
    eval_seconds: float = 0.0  # excluded from training throughput
    seconds_before: float = 0.0  # training time of a resumed run's past

    @property
    def done(self) -> bool:
        return self.stopping or self.state.step >= self.total_steps

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started - self.eval_seconds


class Callback:
    """Hooks the loop calls in list order; override what you need. ``on_step_end`` runs after
    the step, its logging and any evaluation; it may raise to stop the run."""

    def on_train_begin(self, loop: Loop) -> None:
        pass

    def on_step_end(self, loop: Loop) -> None:
        pass

    def on_train_end(self, loop: Loop) -> None:
        """Always called, also when the run fails or is interrupted."""


def plan_steps(
    n_examples: int, batch_size: int, accumulation: int, world: int, epochs: float
) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps): each step takes
    batch_size * accumulation * world examples."""
    per_epoch = math.ceil(n_examples / (batch_size * accumulation * world))
    return per_epoch, max(1, math.ceil(epochs * per_epoch))


def fit(
    job: Job,
    s: LoopSettings,
    evaluate: Callable[[], dict],
    log: Callable[[dict], None],
    callbacks: Sequence[Callback] = (),
) -> LoopResult:
    """Train ``job.model`` in place and leave it holding the best validation weights.

    Args:
        evaluate: returns validation metrics (a dict holding ``s.metric``).
        log: receives one dict per event (train loss, evaluation); events replayed from a
            checkpoint carry ``"replayed": True``.
        callbacks: checkpointing, interruption, progress, ... (see ``callbacks.py``).
    Returns:
        LoopResult with the best metric, where it was reached, and the full history.
    """
    total = max(1, math.ceil(s.epochs * job.steps_per_epoch))
    loop = Loop(job, s, total)
    if s.resume_from is not None:
        loop.state, loop.best = checkpoint.load(
            s.resume_from, job.model, job.optimizers, job.schedulers
        )
        loop.seconds_before = loop.state.train_seconds
        for event in loop.state.history:
            log({**event, "replayed": True})
    st = loop.state
    job.model.train()
    try:
        for cb in callbacks:
            cb.on_train_begin(loop)
        while not loop.done:
            for batch in itertools.islice(job.batches(st.epoch), st.batch_in_epoch, None):
                loss = job.step(batch, st.step)
                st.step += 1
                st.batch_in_epoch += 1
                st.examples_seen += job.batch_examples(batch)
                st.running_loss += loss
                st.running_steps += 1
                if st.step % s.log_every == 0 or st.step == total:
                    _log_train(loop, log)
                loop.epoch_end = st.batch_in_epoch >= job.steps_per_epoch
                if (
                    loop.epoch_end
                    or st.step == total
                    or (s.eval_steps and st.step % s.eval_steps == 0)
                ):
                    loop.stopping = _evaluate(loop, evaluate, log)
                    job.model.train()
                if loop.epoch_end:
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                for cb in callbacks:
                    cb.on_step_end(loop)
                if loop.done or loop.epoch_end:
                    break
            else:  # the epoch's batches ran out before steps_per_epoch: start the next one
                st.epoch, st.batch_in_epoch = st.epoch + 1, 0
    finally:
        for cb in callbacks:
            cb.on_train_end(loop)
        if job.close is not None:
            job.close()
    if loop.best is not None:
        with torch.no_grad():
            params = dict(job.model.named_parameters())
            for n, v in loop.best.items():
                params[n].copy_(v)
    return LoopResult(
        st.best_metric,
        st.best_step,
        st.best_epoch,
        st.step,
        loop.stopping and st.step < total,
        loop.elapsed(),
        st.examples_seen,
        st.history,
    )


def _log_train(loop: Loop, log: Callable[[dict], None]) -> None:
    st = loop.state
    event = {
        "type": "train",
        "step": st.step,
        "epoch": round(st.step / loop.job.steps_per_epoch, 4),
        "loss": st.running_loss / st.running_steps,
        "learning_rate": loop.job.learning_rate() if loop.job.learning_rate else None,
        "examples_per_s": st.examples_seen / max(loop.elapsed(), 1e-9),
        # for progress and ETA readers (the studio, the planner's estimator)
        "total_steps": loop.total_steps,
        "elapsed_s": round(loop.elapsed(), 3),  # training seconds, evaluations excluded
        "time": round(time.time(), 3),
    }
    st.history.append(event)
    log(event)
    loop.last_event = event
    st.running_loss, st.running_steps = 0.0, 0


def _evaluate(loop: Loop, evaluate: Callable[[], dict], log: Callable[[dict], None]) -> bool:
    """Evaluate, keep the best weights; returns True when early stopping triggers."""
    st, s = loop.state, loop.settings
    epoch = st.step / loop.job.steps_per_epoch
    t_eval = time.perf_counter()
    metrics = evaluate()
    seconds = time.perf_counter() - t_eval
    loop.eval_seconds += seconds
    value = metrics[s.metric]
    event = {
        "type": "eval",
        "step": st.step,
        "epoch": round(epoch, 4),
        **{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        "total_steps": loop.total_steps,
        "eval_s": round(seconds, 3),
        "time": round(time.time(), 3),
    }
    st.history.append(event)
    log(event)
    better = value is not None and (
        st.best_metric is None
        or (value > st.best_metric if s.greater_is_better else value < st.best_metric)
    )
    if better:
        st.best_metric, st.best_step, st.best_epoch = value, st.step, epoch
        # only trainable tensors change; copying them is enough to restore the best model
        loop.best = {
            n: p.detach().clone() for n, p in loop.job.model.named_parameters() if p.requires_grad
        }
        st.bad_evals = 0
    else:
        st.bad_evals += 1
    return bool(s.patience) and st.bad_evals >= (s.patience or 0)
