"""``tunelab compare``: train one model per method under the same budget and tabulate cost and
accuracy (the table, plot and runs go to --output-dir)."""

from __future__ import annotations

import argparse
import sys

from tunelab import cliargs
from tunelab import config as C
from tunelab.errors import TunelabError


def add_compare(sub) -> None:
    c = sub.add_parser(
        "compare",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train one model per method under the same budget and tabulate cost and accuracy",
        description="Train each method with the same data, model and budget (each in its own "
        "process, at its own default learning rate unless --learning-rate is given) "
        "and write comparison.md/.csv/.json and comparison.png to --output-dir. "
        "Finished runs in that folder are reused; --overwrite retrains them.",
        epilog="example:\n  tunelab compare --task text-classification --model minilm-l6 \\\n"
        "      --train data/en_sentiment/train.csv --validation "
        "data/en_sentiment/validation.csv \\\n      --test data/en_sentiment/test.csv "
        "--methods full,lora,ia3,adapter --epochs 1 \\\n      --output-dir runs/compare",
    )
    c.add_argument("--config", help="YAML file with the same keys as `tunelab train`")
    c.add_argument(
        "--methods", help="comma-separated methods (default: every method that supports the task)"
    )
    cliargs.add_config_flags(c)
    c.set_defaults(func=cmd_compare)


def cmd_compare(a: argparse.Namespace) -> int:
    from pathlib import Path

    from tunelab.evaluation import compare
    from tunelab.methods import check_supported, get_method
    from tunelab.runs import write_json
    from tunelab.tasks import get_task

    overrides = {k: v for k, v in vars(a).items() if k in C.fields()}
    if "method" in overrides:
        raise TunelabError("tunelab compare takes --methods a,b,c (not --method)")
    cfg = C.build(overrides, a.config)
    C.validate(cfg)
    if not cfg.train.output_dir:
        raise TunelabError(
            "missing required key 'output_dir' (--output-dir): the folder for "
            "the runs and the comparison table"
        )
    task = get_task(cfg.data.task)
    from tunelab.methods import METHODS

    names = (
        [m.strip() for m in a.methods.split(",") if m.strip()]
        if a.methods
        else [m for m in METHODS if METHODS[m].supports(task)]
    )
    for name in names:
        check_supported(get_method(name), task)
    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.train.progress = False
    base = out / "compare_config.yaml"
    base.write_text(C.to_yaml(cfg), encoding="utf-8")

    def echo(s):
        return print(s, file=sys.stderr, flush=True)

    keys = [k for k in task.summary_metrics if k != "n"]
    rows = []
    for name in names:
        err = compare.run_method(base, name, out / name, cfg.train.overwrite, echo)
        rows.append(compare.collect(out, name, err, keys))
    md = compare.to_markdown(rows, keys)
    (out / "comparison.md").write_text(md, encoding="utf-8")
    (out / "comparison.csv").write_text(compare.to_csv(rows, keys), encoding="utf-8")
    write_json(out / "comparison.json", rows)
    compare.plot(rows, keys[0], out / "comparison.png")
    print(md)
    print(f"table: {out / 'comparison.md'} (and .csv, .json)\nplot:  {out / 'comparison.png'}")
    return 0 if all("error" not in r for r in rows) else 1
