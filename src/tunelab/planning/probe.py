"""Measure a plan on this machine: a few real training steps, timed, in a child process whose
peak memory the kernel reports; then the whole run's time and memory from those figures.

The probe is ``tunelab train`` itself on a sample of the data: rows spread evenly over the
length distribution (so its batches are as long, on average, as the real run's, and the longest
rows are in it, so the peak activation memory is too), ``PROBE_STEPS`` optimizer steps logged one
by one, an evaluation of a sample of the validation (and test) rows. The real run's time is then
what :mod:`tunelab.estimate` computes for a live run (steps left at the measured rate, plus the
evaluations at their measured length), plus the probe's fixed cost (start, model load, report).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from tunelab.errors import TunelabError
from tunelab.estimate import seconds_left
from tunelab.planning.inspect import read_any

PROBE_STEPS = 16  # optimizer steps in each of the probe's two passes over its sample
# The first pass meets every batch shape for the first time (kernels are built per shape, memory
# is allocated): it is counted as a fixed cost. The second pass, the same shapes again, gives
# the steady seconds per step the real run trains at.
EVAL_BATCHES = 4  # validation/test batches the probe scores
BYTES_PER_CHAR = 20  # resident cost of a read, tokenised row, per character of its JSON
# Training keeps freed memory for reuse (tunelab.allocator: glibc trims only above 1 GiB), so a
# long run's resident memory creeps above a short probe's as batches of new shapes come and go:
# measured +515 MB (MiniLM, 756 steps) and +558 MB (Gemma LoRA, 441 steps) over their probes
# (bench/plan.py). Added in full from LONG_RUN_STEPS steps, in proportion below.
HEAP_GROWTH_MB = 512
LONG_RUN_STEPS = 300


@dataclass
class Measured:
    """What a probe measured (``rows``: its training rows; ``eval_rows``: scored rows)."""

    seconds_per_step: float
    seconds_per_save: float  # one checkpoint
    seconds_per_eval_row: float
    fixed_s: float  # start, imports, model load, tokenising, saving, report
    peak_mb: float  # the child's peak resident memory (ru_maxrss)
    wall_s: float
    steps: int
    rows: int
    eval_rows: int
    chars: int  # characters of the rows it read (for the data share of memory)


@dataclass
class Estimate:
    """A whole run's predicted time and peak memory."""

    total_s: float
    train_s: float
    eval_s: float
    fixed_s: float
    peak_mb: float
    steps: int
    evaluations: int

    def to_dict(self) -> dict:
        return {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}


def spread_sample(lengths: list[int], n: int) -> list[int]:
    """Indices of ``n`` rows spread evenly over the length order (shortest to longest, both
    ends included); every index when there are not more than ``n``."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if len(order) <= n:
        return order
    if n == 1:
        return [order[-1]]
    return [order[round(k * (len(order) - 1) / (n - 1))] for k in range(n)]


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def _row_len(row: dict) -> int:
    return len(json.dumps(row, ensure_ascii=False))


def probe(config: dict, timeout: float = 1800.0) -> Measured:
    """Train ``config`` (flat training keys; train/validation/test name files) for
    ``PROBE_STEPS`` steps on a length-spread sample in a child process, and measure it.

    Raises:
        TunelabError when the probe fails (its last error line is quoted).
    """
    batch = int(config.get("batch_size", 32)) * int(config.get("gradient_accumulation_steps", 1))
    copies = int(config.get("augment_copies", 1)) if config.get("augment") else 0
    work = Path(tempfile.mkdtemp(prefix="tunelab-probe-"))
    try:
        cfg = {k: v for k, v in config.items() if k not in ("max_train_examples", "resume")}
        _, train = read_any(config["train"])
        want = math.ceil(batch * PROBE_STEPS / (1 + copies))
        pick = spread_sample([_row_len(r) for r in train], want)
        rows = [train[i] for i in pick]
        _write_jsonl(rows, work / "train.jsonl")
        steps_per_epoch = math.ceil(len(rows) * (1 + copies) / batch)
        eval_rows = 0
        chars = sum(map(_row_len, rows))
        for split in ("validation", "test"):
            if config.get(split):
                _, split_rows = read_any(config[split])
                n_eval = int(config.get("batch_size", 32)) * EVAL_BATCHES
                picked = spread_sample([_row_len(r) for r in split_rows], n_eval)
                take = [split_rows[i] for i in picked]
                _write_jsonl(take, work / f"{split}.jsonl")
                cfg[split] = str(work / f"{split}.jsonl")
                eval_rows += len(take)
                chars += sum(map(_row_len, take))
        cfg.update(
            train=str(work / "train.jsonl"),
            output_dir=str(work / "run"),
            epochs=float(2 * max(1, math.ceil(PROBE_STEPS / steps_per_epoch))),
            log_steps=1,
            save_steps=0,
            early_stopping_patience=0,
            report_to="none",
            progress=False,
            max_eval_examples=None,
            overwrite=False,
        )
        (work / "probe.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), "utf-8")
        wall, peak_kb = _run_child(work, timeout)
        return _measured(work / "run", cfg, wall, peak_kb, len(rows), eval_rows, chars)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_child(work: Path, timeout: float) -> tuple[float, int]:
    """Run the probe's ``tunelab train``; (wall seconds, peak RSS in kB)."""
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "tunelab", "train", "--config", str(work / "probe.yaml")]
    started = time.perf_counter()
    with open(work / "stderr.txt", "w") as err:
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                child.kill()
                raise TunelabError(f"the probe ran past {timeout:.0f} s; plan with a smaller model")
            time.sleep(0.05)
    wall = time.perf_counter() - started
    text = (work / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        last = [x for x in text.splitlines() if x.strip()][-1:] or [f"exit code {code}"]
        raise TunelabError(f"the probe run failed: {last[0]}")
    return wall, int(usage.ru_maxrss)


def _measured(
    run: Path, cfg: dict, wall: float, peak_kb: int, rows: int, eval_rows: int, chars: int
) -> Measured:
    from tunelab.runs import read_train_log
    from tunelab.tasks import get_task

    events = read_train_log(run)
    train = [e for e in events if e.get("type") == "train"]
    evals = [e for e in events if e.get("type") == "eval"]
    if len(train) < 4:
        raise TunelabError(f"the probe logged {len(train)} steps; it needs 4")
    # the second pass, from its second step: its first step also holds the checkpoint saved
    # at the end of the first pass, timed apart (the real run saves more often)
    half = len(train) // 2
    a, b = train[half], train[-1]
    rate = (b["elapsed_s"] - a["elapsed_s"]) / max(1, b["step"] - a["step"])
    save = max(0.0, train[half]["elapsed_s"] - train[half - 1]["elapsed_s"] - rate)
    eval_total = sum(e["eval_s"] for e in evals)
    val_rows = _count(cfg.get("validation"))
    per_row = (eval_total / len(evals) / max(1, val_rows)) if evals else 0.0
    test_rows = _count(cfg.get("test"))
    scored = test_rows + (val_rows + test_rows) * get_task(cfg["task"]).baseline_before_training
    fixed = wall - b["elapsed_s"] - eval_total - scored * per_row
    return Measured(
        seconds_per_step=rate,
        seconds_per_save=save,
        seconds_per_eval_row=per_row,
        fixed_s=max(0.0, fixed),
        peak_mb=peak_kb / 1024,
        wall_s=wall,
        steps=int(b["step"]),
        rows=rows,
        eval_rows=eval_rows,
        chars=chars,
    )


def _count(path: str | None) -> int:
    if not path:
        return 0
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def estimate(config: dict, m: Measured, rows: dict[str, int], chars: int) -> Estimate:
    """The whole run's time and peak memory for ``config`` from the probe's figures.

    Args:
        config: the plan's training keys (epochs, batch size, eval cadence, caps).
        m: the probe's measurements (made with the same model, method and batch size).
        rows: rows per split (train, validation, test) the run reads.
        chars: characters of every row the run reads (the data's share of memory).
    """
    from tunelab.tasks import get_task
    from tunelab.training.loop import plan_steps

    copies = int(config.get("augment_copies", 1)) if config.get("augment") else 0
    n_train = rows.get("train", 0)
    if config.get("max_train_examples"):
        n_train = min(n_train, int(config["max_train_examples"]))
    batch = int(config.get("batch_size", 32))
    per_epoch, total = plan_steps(
        n_train * (1 + copies), batch, int(config.get("gradient_accumulation_steps", 1)), 1,
        float(config.get("epochs", 3.0)),
    )  # fmt: skip
    every = config.get("eval_steps")
    evaluations = math.ceil(total / per_epoch) + (total // int(every) if every else 0)
    cap = config.get("max_eval_examples")
    val = min(rows.get("validation", 0), cap or 10**12)
    test = min(rows.get("test", 0), cap or 10**12)
    baseline = (val + test) if get_task(config["task"]).baseline_before_training else 0
    eval_s = m.seconds_per_eval_row * (evaluations * val + test + baseline)
    save_every = config.get("save_steps", 200)
    saves = math.ceil(total / per_epoch) + (total // int(save_every) if save_every else 0)
    train_s = seconds_left(total, m.seconds_per_step) + saves * m.seconds_per_save
    data_mb = max(0, chars - m.chars) * BYTES_PER_CHAR / 2**20
    growth = HEAP_GROWTH_MB * min(1.0, max(0, total - m.steps) / LONG_RUN_STEPS)
    return Estimate(
        total_s=m.fixed_s + train_s + eval_s,
        train_s=train_s,
        eval_s=eval_s,
        fixed_s=m.fixed_s,
        peak_mb=m.peak_mb + data_mb + growth,
        steps=total,
        evaluations=evaluations,
    )
