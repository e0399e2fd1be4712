"""Hyper-parameter search with Optuna: ``tunelab search --config run.yaml --space space.yaml``.

The space file maps run-config keys (the same keys as ``tunelab train``) to what to try:

    learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}   # a float range
    epochs: {low: 1, high: 3, type: int}                     # an int range
    label_smoothing: [0.0, 0.1]                              # a choice
    adversarial: [null, fgm]

Each trial trains a run into ``<output>/trial-N`` and reports its validation metric after
every evaluation; Optuna's median pruner stops trials that fall behind the median of earlier
ones at the same step. At the end: ``results.csv`` (one row per trial), ``best.yaml`` (the
base config plus the best values, ready for ``tunelab train --config``), and only the best
trial's run folder is kept (``--keep-runs`` keeps all).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path
from typing import Literal

from tunelab import config as C
from tunelab.errors import ConfigError, TunelabError


def read_space(path: str) -> dict[str, object]:
    """Check every entry of the space file: a known key, a range or a non-empty list."""
    p = Path(path)
    raw = C.read_mapping(p, "search space file")
    if not raw:
        raise ConfigError(f"{p}: expected 'key: range or list' entries")
    space = {}
    for key, spec in raw.items():
        k = str(key).replace("-", "_")
        if k not in C.fields():
            raise ConfigError(f"{p}: unknown key '{key}'")
        if k in ("output_dir", "train", "validation", "test", "overwrite", "resume"):
            raise ConfigError(f"{p}: '{key}' cannot be searched")
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{p}: '{key}' has an empty list of choices")
            for v in spec:
                C.coerce(k, v, str(p))
        elif isinstance(spec, dict):
            if not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log", "type"}:
                raise ConfigError(f"{p}: '{key}' needs low and high (optional log, type)")
            if float(spec["low"]) >= float(spec["high"]):
                raise ConfigError(f"{p}: '{key}' low must be below high")
        else:
            raise ConfigError(f"{p}: '{key}' must be a list of choices or {{low, high}}")
        space[k] = spec
    return space


def _suggest(trial, key: str, spec) -> object:
    if isinstance(spec, list):  # plain scalars or null, as Optuna's choices must be
        return trial.suggest_categorical(key, spec)
    tp, _ = C.base_type(C.fields()[key][2])
    if spec.get("type") == "int" or tp is int:
        return trial.suggest_int(
            key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log"))
        )
    return trial.suggest_float(
        key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log"))
    )


def search(
    config_file: str,
    space_file: str,
    trials: int,
    output: str,
    pruner: str = "median",
    seed: int = 0,
    keep_runs: bool = False,
    echo=print,
) -> dict:
    """Run the study; returns the best trial's values and metric."""
    import optuna

    from tunelab.tasks import LOWER_IS_BETTER, get_task
    from tunelab.training.pipeline import run_training

    if trials < 1:
        raise ConfigError("--trials must be >= 1")
    space = read_space(space_file)
    base = C.build({}, config_file)
    metric = (
        get_task(base.data.task).default_metric
        if base.train.metric_for_best == "auto"
        else base.train.metric_for_best
    )
    direction: Literal["minimize", "maximize"] = (
        "minimize" if metric in LOWER_IS_BETTER else "maximize"
    )
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        raise TunelabError(f"{out}: already exists and is not empty; choose another --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if pruner == "median"
        else optuna.pruners.NopPruner(),
    )
    rows: list[dict] = []

    def objective(trial) -> float:
        values = {k: _suggest(trial, k, spec) for k, spec in space.items()}
        cfg = C.build(
            {**values, "output_dir": str(out / f"trial-{trial.number}"), "progress": False},
            config_file,
        )
        t0 = time.perf_counter()
        row = {"trial": trial.number, **{k: values[k] for k in space}}

        def on_eval(event: dict) -> None:
            trial.report(float(event[metric]), event["step"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {event[metric]:.4f} at step {event['step']}")

        try:
            _, metrics = run_training(cfg, echo=lambda _m: None, on_eval=on_eval)
        except optuna.TrialPruned:
            rows.append(
                {
                    **row,
                    "state": "pruned",
                    metric: None,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
            echo(f"trial {trial.number}: pruned {json.dumps(values)}")
            raise
        value = metrics["validation"][metric]
        rows.append(
            {
                **row,
                "state": "complete",
                metric: value,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        echo(f"trial {trial.number}: validation {metric} {value:.4f} {json.dumps(values)}")
        return value

    study.optimize(objective, n_trials=trials, catch=())
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise TunelabError("no trial completed")
    best = study.best_trial
    best_values = dict(best.params)
    best_cfg = C.build({**best_values, "output_dir": str(out / "best")}, config_file)
    (out / "best.yaml").write_text(C.to_yaml(best_cfg), encoding="utf-8")
    with open(out / "results.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["trial", "state", *space, metric, "seconds"])
        w.writeheader()
        w.writerows(rows)
    if keep_runs:
        shutil.copytree(out / f"trial-{best.number}", out / "best")
    else:
        for t in study.trials:
            if t.number != best.number:
                shutil.rmtree(out / f"trial-{t.number}", ignore_errors=True)
        (out / f"trial-{best.number}").rename(out / "best")
    return {
        "metric": metric,
        "direction": direction,
        "best_trial": best.number,
        "best_value": best.value,
        "best": best_values,
        "rows": rows,
        "pruned": sum(r["state"] == "pruned" for r in rows),
    }


def format_table(result: dict) -> str:
    rows, metric = result["rows"], result["metric"]
    keys = [k for k in rows[0] if k not in ("trial", "state", metric, "seconds")]
    lines = [
        "| trial | " + " | ".join(keys) + f" | validation {metric} | state | s |",
        "|--:|" + "--|" * len(keys) + "--:|--|--:|",
    ]
    for r in rows:
        v = f"{r[metric]:.4f}" if r[metric] is not None else "-"
        best = " **best**" if r["trial"] == result["best_trial"] else ""
        lines.append(
            f"| {r['trial']} | "
            + " | ".join(str(r[k]) for k in keys)
            + f" | {v}{best} | {r['state']} | {r['seconds']} |"
        )
    return "\n".join(lines)
