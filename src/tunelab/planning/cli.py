"""``tunelab plan``: from a data file and a goal to a measured training plan."""

from __future__ import annotations

import argparse
import json
import re
import sys

from tunelab.cliargs import ExamplesFormatter
from tunelab.errors import TunelabError

EPILOG = """examples:
  tunelab plan --train data/en_sentiment/train.csv
  tunelab plan --train reviews.csv --goal "predict the star rating" --budget 20m --memory 4G
  tunelab plan --train data/zh_sentiment/train.csv --validation data/zh_sentiment/validation.csv \\
      --budget 15m --run
"""


def add_plan(sub) -> None:
    p = sub.add_parser(
        "plan",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="inspect a data file, choose task/model/method, measure a probe, write a plan",
        description="Look at a data file (columns, target, language, size, balance, lengths), "
        "infer the task, choose the model, method and hyper-parameters with a reason for each, "
        "and estimate the run's time and peak memory on this machine from a short probe (a few "
        "real training steps in a child process). Over --budget or --memory it says what to cut "
        "and what the cut costs, and cuts it. Writes a YAML that `tunelab train --config` runs "
        "(and a .json record beside it); --run runs it.",
        epilog=EPILOG,
    )
    p.add_argument(
        "--train", required=True, help="the data file (.csv, .tsv, .jsonl, CoNLL, SQuAD .json)"
    )
    p.add_argument("--validation", help="validation file (default: 10%% of --train, split off)")
    p.add_argument("--test", help="test file (default: another 10%% of --train when it is split)")
    p.add_argument("--goal", help='what you want, in words: "classify tickets by team", '
                   '"predict the rating" (may name the target column)')  # fmt: skip
    p.add_argument("--target", help="the column to learn (default: guessed; see the reasons)")
    p.add_argument("--model", help="use this model (default: chosen by language and task)")
    p.add_argument("--method", help="use this fine-tuning method (default: chosen by model)")
    p.add_argument(
        "--budget", type=_duration, metavar="TIME",
        help="time the run may take: 90s, 20m, 1.5h; the plan is cut to fit",
    )  # fmt: skip
    p.add_argument(
        "--memory", type=_size, metavar="SIZE",
        help="peak memory the run may use: 4G, 800M; the batch is cut to fit",
    )  # fmt: skip
    p.add_argument("--output-dir", help="the run folder the plan trains into (default: runs/NAME)")
    p.add_argument(
        "--plan", metavar="FILE", help="where to write the plan (default: OUTPUT_DIR.plan.yaml)"
    )
    p.add_argument("--no-probe", action="store_true", help="choose only; no probe, no estimate")
    p.add_argument("--json", action="store_true", help="print the plan record as JSON")
    p.add_argument("--run", action="store_true", help="train as planned once it is written")
    p.set_defaults(func=cmd_plan)


def _duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a time such as 90s, 20m or 1.5h")
    unit = (m.group(2) or "m")[0]
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]


def _size(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?)?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 4G or 800M")
    unit = (m.group(2) or "m")[0]
    return float(m.group(1)) * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024**2}[unit]


def cmd_plan(a: argparse.Namespace) -> int:
    from tunelab.planning.trainplan import make_plan

    plan = make_plan(
        a.train, a.validation, a.test, goal=a.goal, target=a.target, model=a.model,
        method=a.method, budget_s=a.budget, memory_mb=a.memory, output_dir=a.output_dir,
        measure=not a.no_probe,
    )  # fmt: skip
    path = plan.write(a.plan or f"{plan.config['output_dir']}.plan.yaml")
    if a.json:
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print(render(plan))
    print(f"plan written to {path}\nrun it with:  tunelab train --config {path}")
    if not a.run:
        return 0 if plan.fits else 4
    if not plan.fits:
        raise TunelabError("the plan does not fit the budget; not running it (see above)")
    from tunelab.cli import main

    sys.stdout.flush()
    return main(["train", "--config", str(path)])


def render(plan) -> str:
    """The plan as a newcomer reads it: the data, each choice with its reason, the estimate."""
    from tunelab.machine import cpu_name, native_bf16
    from tunelab.planning.trainplan import describe_estimate, fmt_s

    p = plan.profile
    head = f"{p.rows:,} rows, {'Chinese' if p.language == 'zh' else 'English'}, {p.task}"
    if p.labels and p.shape in ("single", "multi"):
        top = sorted(p.labels.items(), key=lambda kv: -kv[1])[:6]
        head += f" ({len(p.labels)} classes: " + ", ".join(f"{k} {v:,}" for k, v in top)
        head += ", ..." * (len(p.labels) > 6) + ")"
    elif p.numbers:
        head += f" (numbers {p.numbers['min']:g} to {p.numbers['max']:g})"
    chars = p.text_chars
    out = [
        f"Plan for {p.path}",
        f"  data       {head}",
        f"  texts      {chars['p50']} characters at the median, {chars['p95']} at p95",
    ]
    for step in plan.data_steps:
        out.append(f"  prepare    {step}")
    cut_keys = {k for c in plan.cuts for k in c.keys}
    for k, why in plan.choices.reasons.items():
        why += " (cut to fit: see below)" * (k in cut_keys)
        out.append(f"  {k:<10} {plan.config.get(k)!s:<20} {why}")
    for c in plan.cuts:
        out.append(f"  cut        {c.what}: {c.cost} -> {fmt_s(c.total_s)}")
    if plan.estimate:
        m = plan.measured
        out.append(f"  estimate   {describe_estimate(plan.estimate)}")
        out.append(
            f"             from a probe of {m.steps} steps on {m.rows:,} rows "
            f"({fmt_s(m.wall_s)}) on {cpu_name()}{', bf16' if native_bf16() else ''}"
        )
    if plan.budget_s:
        out.append(f"  budget     {fmt_s(plan.budget_s)}: {'fits' if plan.fits else 'NOT MET'}")
    if plan.memory_mb:
        out.append(f"  memory     {plan.memory_mb:,.0f} MB allowed")
    out += [f"  note       {n}" for n in plan.notes]
    return "\n".join(out)
