"""``tunelab augment``, ``tunelab ensemble`` and ``tunelab search`` (registered by tunelab.cli):
the stand-alone tools against overfitting on small data."""

from __future__ import annotations

import json

from tunelab.cliargs import ExamplesFormatter, config_flag


def add_augment(sub) -> None:
    a = sub.add_parser(
        "augment",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="write an augmented copy of a training file (EDA or masked LM)",
        description="Augment a CSV/TSV/JSONL training file: the original rows, "
        "then COPIES augmented versions of each (other columns "
        "copied, augmented_from = source row). EDA uses WordNet "
        "(English) and the Cilin thesaurus with jieba segmentation "
        "(Chinese), all offline. Only ever give it training data.",
        epilog="example:\n  tunelab augment --input train.csv --output "
        "train_aug.csv --copies 2 --seed 1",
    )
    a.add_argument("--input", required=True)
    a.add_argument("--output", required=True)
    a.add_argument("--method", choices=("eda", "mlm"), default="eda")
    # the same settings `tunelab train --augment` takes, under this command's short names
    config_flag(a, "augment_copies", "--copies")
    config_flag(a, "augment_alpha", "--alpha")
    config_flag(a, "seed")
    a.add_argument("--lang", choices=("en", "zh"), help="default: detected per text")
    a.add_argument("--text-column", help="default: text, sentence, content or review")
    config_flag(a, "augment_mlm_model", "--mlm-model")
    a.set_defaults(func=cmd_augment)


def add_ensemble(sub) -> None:
    e = sub.add_parser(
        "ensemble",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="combine runs into one model that averages their probabilities",
        description="Make a self-contained folder from two or more runs of the "
        "same classification task; it loads, predicts and serves "
        "like any run and averages the members' probabilities.",
        epilog="example:\n  tunelab ensemble --model-dirs runs/s1 runs/s2 "
        "runs/s3 --output runs/ens --eval-data test.csv",
    )
    e.add_argument("--model-dirs", nargs="+", required=True)
    e.add_argument("--output", "--output-dir", dest="output", required=True)
    e.add_argument("--eval-data", help="score the ensemble and each member on this file")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=cmd_ensemble)


def add_search(sub) -> None:
    s = sub.add_parser(
        "search",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="hyper-parameter search with Optuna (pruning bad trials)",
        description="Train up to TRIALS runs of CONFIG with values drawn from "
        "SPACE (TPE sampler), prune trials behind the median, and "
        "write results.csv, best.yaml and the best run (best/).",
        epilog="space.yaml example:\n  learning_rate: {low: 1.0e-5, high: "
        "1.0e-3, log: true}\n  label_smoothing: [0.0, 0.1]\n  "
        "adversarial: [null, fgm]",
    )
    s.add_argument(
        "--config",
        required=True,
        help="the run's YAML config (train, validation and the fixed settings)",
    )
    s.add_argument(
        "--space", required=True, help="YAML: key -> {low, high[, log, type]} or a list of choices"
    )
    s.add_argument("--trials", type=int, default=10)
    s.add_argument("--output-dir", default="runs/search")
    s.add_argument("--pruner", choices=("median", "none"), default="median")
    s.add_argument("--seed", type=int, default=0, help="sampler seed")
    s.add_argument("--keep-runs", action="store_true", help="keep every trial's run folder")
    s.set_defaults(func=cmd_search)


def cmd_augment(a) -> int:
    from tunelab.data.augment import augment_file

    n, m = augment_file(
        a.input,
        a.output,
        text_column=a.text_column,
        method=a.method,
        copies=a.augment_copies,
        alpha=a.augment_alpha,
        seed=a.seed,
        lang=a.lang,
        mlm_model=a.augment_mlm_model,
    )
    print(f"{a.output}: {n} original + {m} augmented rows")
    return 0


def cmd_ensemble(a) -> int:
    from tunelab.ensemble import make_ensemble

    info = make_ensemble(a.model_dirs, a.output, a.eval_data, a.overwrite)
    print(f"ensemble of {len(info.members or [])} {info.task} models: {a.output}")
    return 0


def cmd_search(a) -> int:
    from tunelab.search import format_table, search

    result = search(a.config, a.space, a.trials, a.output_dir, a.pruner, a.seed, a.keep_runs)
    print(format_table(result))
    print(
        json.dumps(
            {
                "best_trial": result["best_trial"],
                "metric": result["metric"],
                "best_value": result["best_value"],
                "best": result["best"],
                "pruned": result["pruned"],
            }
        )
    )
    print(f"best config: {a.output_dir}/best.yaml\nbest run:    {a.output_dir}/best")
    return 0
