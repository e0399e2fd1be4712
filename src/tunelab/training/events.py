"""What a run tells its user while it trains: the opening line, and the loop's event sink
(``train_log.jsonl``, the tracker, progress lines without a terminal)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tunelab.runs import open_train_log
from tunelab.training.trackers import make_tracker

if TYPE_CHECKING:
    from tunelab.training.prepare import Prepared


class Built(Protocol):
    """What these read of :class:`tunelab.training.pipeline.Built` (which imports this module)."""

    trainable: int
    total: int
    learning_rate: float
    precision: str
    batching: str
    total_steps: int


def announce(p: Prepared, b: Built, echo: Callable[[str], None]) -> None:
    aug = f" ({len(p.augmented)} of the train examples augmented)" if p.augmented else ""
    echo(
        f"tunelab: {p.task.name} | {p.source.source} | method {p.method.name} | "
        f"{b.trainable:,} of {b.total:,} parameters train | lr {b.learning_rate:g} | "
        f"{b.precision} | {b.batching} batches | {p.n_train} train / {p.n_validation} "
        f"validation examples{aug}"
    )


@contextlib.contextmanager
def event_log(
    p: Prepared,
    b: Built,
    folder: Path | None,
    echo: Callable[[str], None],
    on_eval: Callable[[dict], None] | None,
):
    """The loop's event sink: train_log.jsonl, the tracker, and a plain progress line about
    every 10% when there is no terminal (CI logs, nohup)."""
    t = p.cfg.train
    assert t.output_dir is not None  # prepare() refuses a run without one
    log_file = open_train_log(folder)
    tracker = (
        make_tracker(t.report_to, folder, Path(t.output_dir), p.cfg.flat()) if folder else None
    )
    bar = t.progress and sys.stderr.isatty()
    every = max(10, 10 * round(b.total_steps / 100))

    def log(event: dict) -> None:
        replayed = event.pop("replayed", False)  # history of a resumed run: file only
        log_file.write(json.dumps(event) + "\n")
        log_file.flush()
        if tracker is not None:
            tracker.log(event)
        if replayed:
            return
        if event["type"] == "train" and t.progress and not bar and event["step"] % every == 0:
            echo(
                f"  step {event['step']} epoch {event['epoch']:.2f}: loss "
                f"{event['loss']:.4f}, {event['examples_per_s']:.1f} examples/s"
            )
        if event["type"] == "eval":
            if on_eval is not None:
                on_eval(event)
            shown = ", ".join(
                f"{k} {event[k]:.4f}"
                for k in p.task.summary_metrics
                if isinstance(event.get(k), float)
            )
            echo(f"  epoch {event['epoch']:.2f} step {event['step']}: validation {shown}")

    try:
        yield log
    finally:
        log_file.close()
        if tracker is not None:
            tracker.close()
