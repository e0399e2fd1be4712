"""The run's settings against overfitting, turned into what the pipeline needs: a few-shot
subset, augmented training examples, dropout overrides, loss options and loop settings.

Everything here touches the training split only; validation and test are never changed.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

from tunelab.errors import ConfigError
from tunelab.tasks import TASKS, Task

# config names of each kind of dropout across architectures (BERT, Llama/Gemma, GPT-2, ...)
DROPOUT_NAMES = {
    "hidden_dropout": (
        "hidden_dropout_prob",
        "hidden_dropout",
        "resid_pdrop",
        "embd_pdrop",
        "dropout",
    ),
    "attention_dropout": ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"),
    "classifier_dropout": ("classifier_dropout", "seq_classif_dropout", "summary_first_dropout"),
}


def _names(flag: str) -> list[str]:
    return [name for name, t in TASKS.items() if getattr(t, flag)]


def check(task: Task, r, num_processes: int) -> None:
    """Refuse combinations that cannot work, before anything slow happens."""
    softmax = " and ".join(_names("softmax_loss"))
    if (r.label_smoothing or r.rdrop_alpha) and not task.softmax_loss:
        what = "--label-smoothing" if r.label_smoothing else "--rdrop-alpha"
        raise ConfigError(f"{what} applies to {softmax}, not {task.name}")
    if r.class_weights and not task.softmax_loss:
        raise ConfigError(f"--class-weights applies to {softmax}, not {task.name}")
    if r.augment and not task.sequence_level:
        raise ConfigError(
            f"--augment applies to {', '.join(_names('sequence_level'))} (one "
            f"text, one target), not {task.name}"
        )
    if (r.adversarial or r.rdrop_alpha) and num_processes > 1:
        raise ConfigError(
            "--adversarial and --rdrop-alpha run extra passes per batch and are "
            "not supported with --num-processes > 1"
        )


def per_class_subset(ex, n: int, seed: int, task: Task) -> None:
    """Keep at most ``n`` examples per label (drawn with ``seed``, file order kept), in place."""
    if not task.single_label:
        raise ConfigError(
            f"--max-train-examples-per-class applies to "
            f"{', '.join(_names('single_label'))}, not {task.name}"
        )
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(ex.labels):
        by_label.setdefault(lab, []).append(i)
    keep = sorted(
        i for idx in by_label.values() for i in (idx if len(idx) <= n else rng.sample(idx, n))
    )
    ex.keep(keep)


def augment_train(ex, r, seed: int) -> list[dict]:
    """Append augmented copies of the training examples (same target), in place; returns the
    rows to save in the run folder for inspection."""
    from tunelab.data.augment import augment_texts

    made = augment_texts(
        ex.texts,
        method=r.augment,
        copies=r.augment_copies,
        alpha=r.augment_alpha,
        seed=seed,
        mlm_model=r.augment_mlm_model,
    )
    rows = []
    for i, text in made:
        ex.texts.append(text)
        ex.labels.append(ex.labels[i])
        ex.lines.append(ex.lines[i])  # errors about it point at its source row
        rows.append(
            {
                "source_line": ex.lines[i],
                "original": ex.texts[i],
                "augmented": text,
                "label": ex.labels[i] if isinstance(ex.labels[i], str) else repr(ex.labels[i]),
            }
        )
    return rows


def write_augmented(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["source_line", "label", "original", "augmented"])
        w.writeheader()
        w.writerows(rows)


def dropout_overrides(model_path: str, r) -> dict:
    """``from_pretrained`` keyword arguments that set the requested dropout rates."""
    wanted = {k: getattr(r, k) for k in DROPOUT_NAMES if getattr(r, k) is not None}
    if not wanted:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path).to_dict()
    out = {}
    for key, value in wanted.items():
        names = [n for n in DROPOUT_NAMES[key] if n in config]
        if not names:
            raise ConfigError(
                f"--{key.replace('_', '-')}: the model's config has none of "
                f"{', '.join(DROPOUT_NAMES[key])}"
            )
        out.update({n: value for n in names})
    return out


def loss_options(task: Task, r, train_labels: list, spec: dict) -> dict:
    """Spec entries read by the task's loss: label smoothing and class weights."""
    out: dict = {}
    if r.label_smoothing:
        out["label_smoothing"] = r.label_smoothing
    if r.class_weights == "auto":
        names = spec["labels"]
        if task.per_token:  # tags per word
            counts = Counter(t for tags in train_labels for t in tags)
        else:
            counts = Counter(train_labels)
        total = sum(counts[n] for n in names)
        out["class_weights"] = [round(total / (len(names) * max(counts[n], 1)), 6) for n in names]
    return out


def summary(r) -> dict:
    """The non-default settings, recorded in tunelab.json."""
    from dataclasses import fields

    return {f.name: getattr(r, f.name) for f in fields(r) if getattr(r, f.name) != f.default}
