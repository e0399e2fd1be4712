"""What every training job gets around its steps: checkpoints, Ctrl-C, a progress bar.

Order matters and is the caller's: checkpoints first (a step's checkpoint exists before anything
else looks at it), then any extra callbacks, then interruption (which saves one more
checkpoint and stops).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from tunelab.training import checkpoint
from tunelab.training.distributed import Dist
from tunelab.training.loop import Callback, Interrupted, Loop


class Checkpointing(Callback):
    """A checkpoint every ``save_steps`` optimizer steps and at every epoch end (not after the
    last step: the finished run is saved instead), the newest ``keep`` kept."""

    def __init__(
        self,
        directory: Path | None,
        save_steps: int | None,
        keep: int,
        config_yaml: str = "",
        data: dict[str, dict] | None = None,
    ) -> None:
        self.directory, self.save_steps, self.keep = directory, save_steps, keep
        self.config_yaml, self.data = config_yaml, data  # checked on resume

    def save(self, loop: Loop) -> Path | None:
        if self.directory is None:  # e.g. a process other than the main one
            return None
        loop.state.train_seconds = loop.elapsed()
        job = loop.job
        return checkpoint.save(
            self.directory,
            job.model,
            job.optimizers,
            job.schedulers,
            loop.state,
            loop.best,
            self.keep,
            self.config_yaml,
            self.data,
        )

    def on_step_end(self, loop: Loop) -> None:
        step = loop.state.step
        if not loop.done and (loop.epoch_end or (self.save_steps and step % self.save_steps == 0)):
            self.save(loop)


class Interruption(Callback):
    """Ctrl-C finishes the current step, saves a checkpoint and raises :class:`Interrupted`;
    a second Ctrl-C stops at once. Every process stops at the same step (the others would wait
    forever in the next all-reduce)."""

    def __init__(self, checkpoints: Checkpointing, dist: Dist | None = None) -> None:
        self.checkpoints, self.dist = checkpoints, dist or Dist()
        self.interrupted = False
        self._previous: Any = None

    def _on_sigint(self, signum, frame) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def on_train_begin(self, loop: Loop) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def on_step_end(self, loop: Loop) -> None:
        if self.dist.all_sum(float(self.interrupted)) > 0 and loop.state.step < loop.total_steps:
            raise Interrupted(loop.state.step, self.checkpoints.save(loop))

    def on_train_end(self, loop: Loop) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


class ProgressBar(Callback):
    """A tqdm bar on a terminal (steps, loss, examples/s)."""

    def on_train_begin(self, loop: Loop) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=loop.total_steps,
            initial=loop.state.step,
            desc="training",
            unit="step",
            dynamic_ncols=True,
            leave=False,
        )

    def on_step_end(self, loop: Loop) -> None:
        self.bar.update(1)
        e = loop.last_event
        if e is not None and e["step"] == loop.state.step:
            self.bar.set_postfix(loss=f"{e['loss']:.4f}", ex_s=f"{e['examples_per_s']:.1f}")

    def on_train_end(self, loop: Loop) -> None:
        self.bar.close()
