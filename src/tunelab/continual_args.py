"""The ``continual`` settings group: continuing a finished run on new data (continual learning).

A continued run takes the previous run's settings (model, task, method and its options, columns,
learning rate, epochs, batch size, ...) unless the YAML file or the command line says otherwise;
data files and the output folder are never taken over. How each strategy works:
:mod:`tunelab.training.continual`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import ConfigError
from tunelab.settings_fields import setting

STRATEGIES = ("naive", "replay", "ewc", "lora-per-task")

# settings a continued run never takes over from the run it continues
NOT_INHERITED = frozenset(
    {
        "train",
        "validation",
        "test",
        "output_dir",
        "overwrite",
        "resume",
        "resume_from",
        "continue_from",
        "max_train_examples",
        "max_train_examples_per_class",
        "max_eval_examples",
    }
)


@dataclass
class ContinualArgs:
    continue_from: str | None = setting(
        None,
        "continue training this finished run folder on new data (--train): its weights, its "
        "label set (new labels in --train are added) and its settings unless given again",
    )
    continual: str = setting(
        "replay",
        "with --continue-from: naive (fine-tune on the new data only; forgets), replay (mix "
        "in a stored class-balanced sample of earlier data), ewc (penalise moving the weights "
        "earlier data needs) or lora-per-task (a new adapter and head per stage on the "
        "frozen base; the stage must be named when predicting)",
        choices=STRATEGIES,
    )
    replay_size: int = setting(
        1000,
        "replay: most earlier examples the run folder keeps (class-balanced) for later stages",
        check=">=1",
    )
    replay_ratio: float = setting(
        0.3,
        "replay: earlier examples mixed in per new training example (0.3: about 1.3x the "
        "compute of naive)",
        check=">0",
    )
    replay_balance: bool = setting(
        True,
        "replay: weight each label's loss by how rarely it appears among an epoch's new and "
        "replayed examples (as --class-weights auto), against the pull towards the new labels; "
        "--no-replay-balance: unweighted",
    )
    replay_distill: float = setting(
        1.0,
        "replay: weight of the squared error between the old labels' scores and the earlier "
        "model's on each replayed example (dark experience replay; 0: plain replay)",
        check=">=0",
    )
    ewc_lambda: float = setting(
        3.0,
        "ewc: weight of the penalty sum F_i (w_i - w_prev_i)^2 / 2, with the Fisher "
        "information F scaled to mean 1",
        check=">0",
    )
    ewc_samples: int = setting(
        64, "ewc: earlier examples the Fisher information is estimated on", check=">=1"
    )


def inherited(folder: str, read: Any) -> dict[str, Any]:
    """The settings of the run at ``folder`` that a run continuing it takes over;
    ``read(path, source)``: the config module's checked YAML reader."""
    run = Path(folder)
    if not (run / "tunelab.json").is_file():
        raise ConfigError(
            f"key 'continue_from' = {folder!r}: not a finished tunelab run folder (no tunelab.json)"
        )
    if not (run / "config.yaml").is_file():
        raise ConfigError(
            f"key 'continue_from' = {folder!r}: the run has no config.yaml to continue from"
        )
    values = read(run / "config.yaml")
    return {k: v for k, v in values.items() if k not in NOT_INHERITED}
