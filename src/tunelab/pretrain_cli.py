"""``tunelab pretrain``: continued pre-training on raw text (see
:mod:`tunelab.tasks.language_modeling`), with a held-out split for perplexity before and after
and an optional replay slice of general text against forgetting."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

from tunelab.cliargs import ExamplesFormatter
from tunelab.continual_args import ContinualArgs

# set by pretrain itself, or meaningless for it (continual learning continues labelled runs)
PRETRAIN_FIXED = (
    "task",
    "train",
    "validation",
    "test",
    "text_column",
    "label_column",
    *(f.name for f in dataclasses.fields(ContinualArgs)),
)
PRETRAIN_DEFAULTS = {
    "task": "language-modeling",
    "method": "full",
    "epochs": 1.0,
    "batch_size": 16,
    "max_length": 128,
    "learning_rate": 5e-5,
    "warmup_ratio": 0.06,
    "output_dir": "runs/pretrained",
}


def add_pretrain(sub) -> None:
    from tunelab.cliargs import add_config_flags

    t = sub.add_parser(
        "pretrain",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="continue pre-training a model on your raw text (masked or causal LM)",
        description="Continue a model's pre-training on raw, unlabelled text of your domain "
        "before fine-tuning it (Gururangan et al., 2020): masked language modelling with "
        "whole-word masking for encoders (jieba words for Chinese), causal language modelling "
        "on packed documents for decoders. --text is a .txt/.md file (a document per line), "
        "a .csv/.tsv/.jsonl file (its text column) or a folder (a document per .txt/.md "
        "file). Some documents are held out to measure perplexity before and after; "
        "--replay mixes in general text so the model keeps what it knew. The output folder "
        "is a model: fine-tune it with `tunelab train --model DIR`.",
        epilog="examples:\n"
        "  tunelab pretrain --model minilm-l6 --text reviews.txt --output-dir runs/minilm-reviews\n"
        "  tunelab train --model runs/minilm-reviews --train labelled.csv ...\n"
        "  tunelab pretrain --model smollm2-135m --text docs/ --replay general.txt "
        "--output-dir runs/smollm-docs",
    )
    t.add_argument("--text", required=True, help="raw text: a file or a folder (see above)")
    t.add_argument("--text-column", default="text", help="column of a CSV/JSONL --text file")
    t.add_argument(
        "--validation-text", help="held-out text (default: --validation-ratio of --text)"
    )
    t.add_argument(
        "--validation-ratio",
        type=float,
        default=0.05,
        help="share of the documents held out for perplexity (default 0.05, at least 1)",
    )
    t.add_argument("--replay", help="general text mixed into training against forgetting")
    t.add_argument(
        "--replay-ratio",
        type=float,
        default=0.2,
        help="replay documents per domain document (default 0.2)",
    )
    t.add_argument("--config", help="YAML file with training keys (as for `tunelab train`)")
    add_config_flags(t, exclude=PRETRAIN_FIXED, defaults=PRETRAIN_DEFAULTS)
    t.set_defaults(func=cmd_pretrain)


def split_documents(
    docs: list[str], ratio: float, seed: int, held_out: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """(train, validation): ``held_out`` when given, else a seeded ``ratio`` of ``docs`` (at
    least one document, and at least one left to train on)."""
    from tunelab.errors import ConfigError

    if held_out is not None:
        return docs, held_out
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"--validation-ratio {ratio}: must be between 0 and 1")
    if len(docs) < 2:
        raise ConfigError(
            "--text has one document: give --validation-text, or more documents to hold some out"
        )
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n = min(len(docs) - 1, max(1, round(len(docs) * ratio)))
    val = set(order[:n])
    return [d for i, d in enumerate(docs) if i not in val], [docs[i] for i in sorted(val)]


def with_replay(train: list[str], replay: list[str], ratio: float, seed: int) -> list[str]:
    """``train`` plus ``ratio`` x len(train) replay documents (sampled, repeated if too few),
    shuffled together."""
    if ratio <= 0 or not replay:
        return train
    rng = random.Random(seed)
    k = max(1, round(len(train) * ratio))
    picked = [replay[i % len(replay)] for i in rng.sample(range(max(k, len(replay))), k)]
    mixed = train + picked
    rng.shuffle(mixed)
    return mixed


def write_jsonl(path: Path, docs: list[str]) -> Path:
    from tunelab.files import atomic_write_text

    text = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
    atomic_write_text(path, text, what="pre-training text")
    return path


def cmd_pretrain(a) -> int:
    from tunelab import config as C
    from tunelab.data.raw_text import read_documents
    from tunelab.errors import ConfigError
    from tunelab.training.pipeline import run_training

    values = {**PRETRAIN_DEFAULTS, **{k: v for k, v in vars(a).items() if k in C.fields()}}
    cfg = C.build(values, a.config)
    if not 0.0 <= a.replay_ratio <= 10.0:
        raise ConfigError(f"--replay-ratio {a.replay_ratio}: must be between 0 and 10")
    seed = cfg.train.seed
    docs = read_documents(a.text, a.text_column)
    held = read_documents(a.validation_text, a.text_column) if a.validation_text else None
    train, validation = split_documents(docs, a.validation_ratio, seed, held)
    replay = read_documents(a.replay, a.text_column) if a.replay else []
    mixed = with_replay(train, replay, a.replay_ratio, seed)
    out = Path(cfg.train.output_dir or "runs/pretrained")
    data = out.parent / f"{out.name}.text-data"
    data.mkdir(parents=True, exist_ok=True)
    cfg.data.train = str(write_jsonl(data / "train.jsonl", mixed))
    cfg.data.validation = str(write_jsonl(data / "validation.jsonl", validation))
    print(
        f"tunelab: pretrain on {len(train)} documents"
        + (f" + {len(mixed) - len(train)} replay documents" if replay else "")
        + f", {len(validation)} held out for perplexity",
        flush=True,
    )
    run_dir, metrics = run_training(cfg)
    before = metrics.get("before_training", {}).get("validation", {})
    after = metrics.get("validation", {})
    print(
        json.dumps(
            {
                "perplexity_before": before.get("perplexity"),
                "perplexity_after": after.get("perplexity"),
                "documents": {"train": len(train), "replay": len(mixed) - len(train)},
            }
        )
    )
    print(f"model: {run_dir}\nnext:  tunelab train --model {run_dir} --train LABELLED.csv ...")
    return 0
