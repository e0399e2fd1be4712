"""A training plan: inspect the data, choose, measure a probe, fit the budget, write it down.

    >>> plan = make_plan("data/en_sentiment/train.csv", budget_s=600)
    >>> plan.estimate.total_s, plan.config["epochs"], plan.fits
    (431.7, 3.0, True)
    >>> plan.write("runs/en_sentiment.plan.yaml")   # tunelab train --config runs/...plan.yaml

A file without a validation split is split (80/10/10, stratified for classes, with the seed)
into ``<plan>.data/``; the plan then names those files, so it runs as written anywhere the
folder travels with it.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tunelab.errors import TunelabError
from tunelab.files import atomic_write_text
from tunelab.planning.budget import Cut, fit_budget
from tunelab.planning.choose import Choices, choose
from tunelab.planning.inspect import Profile, inspect_file, read_any
from tunelab.planning.probe import Estimate, Measured, estimate, probe

MIN_BATCH = 4  # the smallest batch a memory cut goes down to


@dataclass
class TrainPlan:
    profile: Profile
    choices: Choices
    config: dict
    data_steps: list[str] = field(default_factory=list)
    measured: Measured | None = None
    estimate: Estimate | None = None
    cuts: list[Cut] = field(default_factory=list)
    budget_s: float | None = None
    memory_mb: float | None = None
    fits: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        from tunelab.machine import describe

        return {
            "data": self.profile.summary(),
            "data_steps": self.data_steps,
            "config": self.config,
            "reasons": self.choices.reasons,
            "probe": self.measured.__dict__ if self.measured else None,
            "estimate": self.estimate.to_dict() if self.estimate else None,
            "budget_s": self.budget_s,
            "memory_mb": self.memory_mb,
            "cuts": [c.to_dict() for c in self.cuts],
            "fits": self.fits,
            "notes": self.notes,
            "machine": describe(),
        }

    def write(self, path: str | Path) -> Path:
        """The plan as a YAML ``tunelab train --config`` runs (reasons and the estimate as
        comments), and beside it ``.json`` with everything measured."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# tunelab plan for {self.profile.path}"]
        if self.estimate:
            lines.append(f"# estimate on this machine: {describe_estimate(self.estimate)}")
        for c in self.cuts:
            lines.append(f"# cut: {c.what} ({c.cost})")
        for k, why in self.choices.reasons.items():
            lines.append(f"# {k}: {why}")
        body = yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True)
        atomic_write_text(path, "\n".join(lines) + "\n" + body, what="plan")
        atomic_write_text(
            path.with_suffix(".json"),
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str),
            what="plan record",
        )
        return path


def make_plan(
    train: str,
    validation: str | None = None,
    test: str | None = None,
    goal: str | None = None,
    target: str | None = None,
    model: str | None = None,
    method: str | None = None,
    budget_s: float | None = None,
    memory_mb: float | None = None,
    output_dir: str | None = None,
    data_dir: str | Path | None = None,
    measure: bool = True,
    seed: int = 42,
) -> TrainPlan:
    """Plan a run on ``train``: inspect, choose, split when needed, probe, fit the budget.

    Args:
        validation, test: the user's own splits; without a validation file, ``train`` is split
            80/10/10 into ``data_dir``.
        goal: the goal in words (may name the target column or ask for a number).
        budget_s, memory_mb: limits the plan must fit, cut to when it does not.
        measure: run the probe (False: choices only, no estimate).
    """
    profile = inspect_file(train, goal, target)
    choices = choose(profile, model, method)
    config = dict(choices.config)
    plan = TrainPlan(profile, choices, config, budget_s=budget_s, memory_mb=memory_mb)
    name = output_dir or f"runs/{_name(train)}"
    folder = Path(data_dir or f"{name}.data")
    files = {"train": train, "validation": validation, "test": test}
    if validation is None:
        files.update(_split(profile, folder, seed, keep_test=test))
        plan.data_steps.append(
            f"split {train} ({profile.rows:,} rows) into train/validation"
            f"{'/test' if test is None else ''} "
            f"({'stratified by label, ' if profile.shape == 'single' else ''}seed {seed}) "
            f"in {folder}/"
        )
    config.update({k: v for k, v in files.items() if v}, output_dir=name, seed=seed)
    if not measure:
        return plan
    _resolve(config["model"])  # converts a packaged model once, outside the timed probe
    sizes = {s: _size(f) for s, f in files.items() if f}
    rows = {s: n for s, (n, _) in sizes.items()}
    chars = sum(c for _, c in sizes.values())
    plan.measured = probe(config)
    if memory_mb:
        _fit_memory(plan, rows, chars)
    if budget_s:
        _fit_time(plan, rows, chars, budget_s)
        assert plan.estimate is not None
        if not plan.fits:
            plan.notes.append(
                f"even with every cut the run takes {fmt_s(plan.estimate.total_s)}, over the "
                f"budget of {fmt_s(budget_s)}: try a smaller model or fewer rows"
            )
    else:
        plan.estimate = estimate(config, plan.measured, rows, chars)
    if "max_train_examples" in plan.config:
        _subset_file(plan, folder, seed)
    return plan


def _fit_time(plan: TrainPlan, rows: dict, chars: int, budget_s: float) -> None:
    """Cut to the budget; a cut that changes the step itself (a shorter max_length) was priced
    by scaling, so the cut plan is probed again and its measured figures stand (twice at most)."""
    assert plan.measured is not None
    for _ in range(2):
        lengths = plan.choices.token_lengths
        fitted = fit_budget(plan.config, plan.measured, rows, chars, budget_s, lengths)
        plan.config, plan.estimate, plan.fits = fitted.config, fitted.estimate, fitted.fits
        plan.cuts += fitted.cuts
        if not any("max_length" in c.keys for c in fitted.cuts):
            return
        plan.measured = probe(plan.config)
        plan.estimate = estimate(plan.config, plan.measured, rows, chars)
        plan.fits = plan.estimate.total_s <= budget_s
        if plan.fits:
            return


def _fit_memory(plan: TrainPlan, rows: dict, chars: int) -> None:
    """Halve the batch (doubling accumulation, so each update sees as many rows) and then turn
    on gradient checkpointing until a fresh probe's peak fits; each step measured."""
    assert plan.measured is not None and plan.memory_mb is not None
    cfg = plan.config
    while (before := estimate(cfg, plan.measured, rows, chars).peak_mb) > plan.memory_mb:
        if cfg["batch_size"] // 2 >= MIN_BATCH:
            accumulate = cfg.get("gradient_accumulation_steps", 1) * 2
            keys = {"batch_size": cfg["batch_size"] // 2, "gradient_accumulation_steps": accumulate}
            what = f"batch {keys['batch_size']} x {keys['gradient_accumulation_steps']} steps"
        elif not cfg.get("gradient_checkpointing"):
            keys, what = {"gradient_checkpointing": True}, "gradient checkpointing"
        else:
            plan.fits = False
            plan.notes.append(
                f"peak memory {before:,.0f} MB is over {plan.memory_mb:,.0f} MB even at the "
                "smallest batch with gradient checkpointing: choose a smaller model"
            )
            return
        cfg.update(keys)
        plan.measured = probe(cfg)
        after = estimate(cfg, plan.measured, rows, chars)
        plan.cuts.append(Cut(dict(keys), what, f"peak memory {before:,.0f} -> {after.peak_mb:,.0f}"
                             " MB (measured); slower steps", after.total_s))  # fmt: skip


def _split(profile: Profile, folder: Path, seed: int, keep_test: str | None) -> dict[str, str]:
    """Write train/validation(/test) JSONL splits of the profiled file; their paths."""
    _, rows = read_any(profile.path)
    rng = random.Random(seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        key = str(r.get(profile.target_column)).strip() if profile.shape == "single" else ""
        groups[key].append(r)
    parts: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for group in groups.values():
        rng.shuffle(group)
        n_val = max(1, round(0.1 * len(group))) if len(group) >= 3 else 0
        n_test = 0 if keep_test else n_val
        parts["validation"] += group[:n_val]
        parts["test"] += group[n_val : n_val + n_test]
        parts["train"] += group[n_val + n_test :]
    if not parts["validation"]:
        raise TunelabError(
            f"{profile.path}: {len(rows)} rows are too few to hold out a validation split"
        )
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, items in parts.items():
        if not items:
            continue
        rng.shuffle(items)
        path = folder / f"{split}.jsonl"
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items)
        atomic_write_text(path, text, what=f"{split} split")
        out[split] = str(path)
    return out


def _subset_file(plan: TrainPlan, folder: Path, seed: int) -> None:
    """A subset cut as a shuffled (stratified) file, not the first rows of a maybe sorted one."""
    n = int(plan.config.pop("max_train_examples"))
    _, rows = read_any(plan.config["train"])
    rng = random.Random(seed)
    rows = rows[:]
    rng.shuffle(rows)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"train-{n}.jsonl"
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:n]),
                      what="training subset")  # fmt: skip
    plan.data_steps.append(f"draw {n:,} training rows at random (seed {seed}) into {path}")
    plan.config["train"] = str(path)


def _resolve(model: str) -> None:
    from tunelab.models.registry import resolve_model

    resolve_model(model)


def _size(path: str) -> tuple[int, int]:
    """(rows, characters of the rows as JSON) of a data file, read once."""
    rows = read_any(path)[1]
    return len(rows), sum(len(json.dumps(r, ensure_ascii=False)) for r in rows)


def _name(train: str) -> str:
    p = Path(train)
    return p.parent.name if p.stem in ("train", "data", "all") and p.parent.name else p.stem


def fmt_s(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def describe_estimate(e: Estimate) -> str:
    return (
        f"{fmt_s(e.total_s)} (training {fmt_s(e.train_s)} for {e.steps:,} steps, "
        f"{e.evaluations} evaluation{'s' * (e.evaluations != 1)} and test {fmt_s(e.eval_s)}, "
        f"start/load/report {fmt_s(e.fixed_s)}), peak memory {e.peak_mb:,.0f} MB"
    )
