"""What to cut when a plan does not fit a time budget, and what each cut costs.

Every cut is priced from the probe's measurements (:func:`tunelab.planning.probe.estimate`), not
guessed: fewer epochs, fewer validation and test rows scored, a shorter ``max_length`` (the step
time scaled by the tokens the shorter limit leaves), a subset of the training rows.
They are tried in that order, each only as far as needed, so the plan keeps as much of the
training as the budget allows; what each one costs in data or accuracy is said in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from tunelab.planning.probe import Estimate, Measured, estimate

MIN_EVAL_ROWS = 500  # a validation sample smaller than this makes model selection noisy
MIN_TRAIN_ROWS = 200


@dataclass
class Cut:
    """One change to the plan: the keys it sets, the estimate with it, and its cost."""

    keys: dict
    what: str
    cost: str
    total_s: float = 0.0

    def to_dict(self) -> dict:
        return {"keys": self.keys, "what": self.what, "cost": self.cost,
                "total_s": round(self.total_s, 1)}  # fmt: skip


@dataclass
class Fit:
    config: dict
    estimate: Estimate
    cuts: list[Cut] = field(default_factory=list)
    fits: bool = True


def fit_budget(
    config: dict,
    m: Measured,
    rows: dict[str, int],
    chars: int,
    budget_s: float,
    token_lengths: list[int],
) -> Fit:
    """Cut ``config`` until its estimate fits ``budget_s``; the cuts applied, in order."""
    cfg = dict(config)
    est = estimate(cfg, m, rows, chars)
    out = Fit(cfg, est)
    if est.total_s <= budget_s:
        return out
    steps = [_epochs, _eval_cap, _max_length, _subset]
    for step in steps:
        cut = step(cfg, m, rows, chars, budget_s, token_lengths)
        if cut is None:
            continue
        cfg.update(cut.keys)
        if "_rate" in cut.keys:  # a shorter max_length: the step time it leaves
            m = replace(m, seconds_per_step=cfg.pop("_rate"))
            cut.keys.pop("_rate")
        est = estimate(cfg, m, rows, chars)
        cut.total_s = est.total_s
        out.cuts.append(cut)
        if est.total_s <= budget_s:
            break
    out.config, out.estimate, out.fits = cfg, est, est.total_s <= budget_s
    return out


def _over(cfg: dict, m: Measured, rows: dict, chars: int) -> float:
    return estimate(cfg, m, rows, chars).total_s


def _eval_cap(cfg, m, rows, chars, budget, lengths) -> Cut | None:
    val = rows.get("validation", 0)
    if val <= MIN_EVAL_ROWS:
        return None
    est = estimate(cfg, m, rows, chars)
    if est.eval_s < 0.1 * est.total_s:
        return None
    need = est.total_s - budget
    per_row = m.seconds_per_eval_row * (est.evaluations + 1)
    cap = max(MIN_EVAL_ROWS, val - math.ceil(need / max(per_row, 1e-9)))
    return Cut(
        {"max_eval_examples": int(cap)},
        f"score {cap:,} of the {val:,} validation (and test) rows",
        "noisier model selection and test figures (the standard error of an accuracy grows "
        f"from {_se(val):.1%} to {_se(cap):.1%})",
    )


def _se(n: int) -> float:
    return math.sqrt(0.25 / max(1, n))


def _epochs(cfg, m, rows, chars, budget, lengths) -> Cut | None:
    epochs = float(cfg.get("epochs", 3.0))
    if epochs <= 1:
        return None
    for e in range(int(math.ceil(epochs)) - 1, 0, -1):
        if _over({**cfg, "epochs": float(e)}, m, rows, chars) <= budget or e == 1:
            return Cut(
                {"epochs": float(e)},
                f"{e} epoch{'s' * (e > 1)} instead of {epochs:g}",
                "fewer passes over the data: usually a point or two of accuracy on a set of "
                "this kind, more on small data",
            )
    return None


def _max_length(cfg, m, rows, chars, budget, lengths) -> Cut | None:
    current = int(cfg.get("max_length", 128))
    if not lengths or current <= 32:
        return None

    def tokens(limit: int) -> float:
        return sum(min(x + 2, limit) for x in lengths) / len(lengths)

    base = tokens(current)
    for limit in (int(current * 0.75) // 8 * 8, current // 2 // 8 * 8):
        if limit < 32:
            break
        rate = m.seconds_per_step * tokens(limit) / base
        trial = replace(m, seconds_per_step=rate)
        fits = _over({**cfg, "max_length": limit}, trial, rows, chars) <= budget
        if fits or limit == current // 2 // 8 * 8:
            cut = sum(x + 2 > limit for x in lengths) / len(lengths)
            return Cut(
                {"max_length": limit, "_rate": rate},
                f"max_length {limit} instead of {current}",
                f"{cut:.0%} of the texts are truncated (the model sees their first {limit} tokens)",
            )
    return None


def _subset(cfg, m, rows, chars, budget, lengths) -> Cut | None:
    n = rows.get("train", 0)
    if n <= MIN_TRAIN_ROWS:
        return None
    lo, hi = MIN_TRAIN_ROWS, n
    while hi - lo > max(1, n // 200):
        mid = (lo + hi) // 2
        if _over({**cfg, "max_train_examples": mid}, m, rows, chars) <= budget:
            lo = mid
        else:
            hi = mid
    keep = lo
    return Cut(
        {"max_train_examples": int(keep)},
        f"train on {keep:,} of the {n:,} rows, drawn at random",
        f"{1 - keep / n:.0%} of the training data unused; accuracy falls with less data "
        "(README, small data: MiniLM 82.0% at 1,000 reviews per class, 75.8% at 128)",
    )
