"""How far a training run is and how long it has left, from the events it logs.

One estimator for every reader: the studio's progress bar and ETA read a live run's
``train_log.jsonl``; the planner times a short probe of a few real steps and asks the same
functions how long the whole run would take. Measured throughput only: the seconds per step of
the latest logged steps (the first steps, slower while memory is allocated, age out) and the
measured length of an evaluation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

WINDOW = 5  # train events the step rate is measured over


@dataclass
class Progress:
    """Where a run stands.

    Attributes:
        step, total_steps: optimizer steps done and planned.
        fraction: step / total_steps.
        epoch: epochs done (fractional).
        elapsed_s: training seconds so far (evaluations excluded).
        seconds_per_step: measured over the latest logged steps; None before two are logged.
        eval_s: mean seconds of one evaluation so far; None before the first.
        eta_s: seconds left (steps left at the measured rate, plus the evaluations left at
            their measured length); None until a rate is measured.
        examples_per_s: as the run reports it.
    """

    step: int
    total_steps: int
    fraction: float
    epoch: float
    elapsed_s: float
    seconds_per_step: float | None
    eval_s: float | None
    eta_s: float | None
    examples_per_s: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def seconds_left(
    steps_left: int,
    seconds_per_step: float,
    evals_left: float = 0.0,
    eval_s: float | None = None,
) -> float:
    """The time ``steps_left`` steps and ``evals_left`` evaluations take at measured rates."""
    return max(0, steps_left) * seconds_per_step + max(0.0, evals_left) * (eval_s or 0.0)


def progress(events: list[dict]) -> Progress | None:
    """The progress of a run from its log events (train and eval, in order, as
    ``runs.read_train_log`` gives them); None before the first train event that carries
    ``total_steps`` (logs written before tunelab recorded it)."""
    train = [e for e in events if e.get("type") == "train" and "total_steps" in e]
    if not train:
        return None
    last = train[-1]
    step, total = int(last["step"]), int(last["total_steps"])
    evals = [e for e in events if e.get("type") == "eval" and "eval_s" in e]
    if len(train) >= 2:
        window = train[-WINDOW:] if len(train) > WINDOW else train[1:]
        first = window[0] if len(window) > 1 else train[0]
        d_steps = window[-1]["step"] - first["step"]
        d_time = window[-1]["elapsed_s"] - first["elapsed_s"]
        rate = d_time / d_steps if d_steps > 0 and d_time > 0 else None
    else:
        rate = last["elapsed_s"] / step if step > 0 and last["elapsed_s"] > 0 else None
    eval_s = sum(e["eval_s"] for e in evals) / len(evals) if evals else None
    eta = None
    if rate is not None:
        eta = seconds_left(total - step, rate, _evals_left(events, step, total), eval_s)
        if step >= total:
            eta = 0.0
    return Progress(
        step=step,
        total_steps=total,
        fraction=min(1.0, step / total) if total else 1.0,
        epoch=float(last.get("epoch", 0.0)),
        elapsed_s=float(last["elapsed_s"]),
        seconds_per_step=rate,
        eval_s=eval_s,
        eta_s=eta,
        examples_per_s=last.get("examples_per_s"),
    )


def _evals_left(events: list[dict], step: int, total: int) -> float:
    """Evaluations still to come: at the interval seen so far, else one per epoch."""
    steps = [e["step"] for e in events if e.get("type") == "eval"]
    if len(steps) >= 2:
        interval = steps[-1] - steps[-2]
    elif steps:
        interval = steps[0]
    else:
        last = next(e for e in reversed(events) if e.get("type") == "train")
        epoch = float(last.get("epoch") or 0.0)
        interval = round(last["step"] / epoch) if epoch > 0 else total
    if interval <= 0:
        return 0.0
    done = steps[-1] if steps else 0
    return float(max(0, (total - done) // interval))
