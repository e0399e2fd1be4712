"""The ``tunelab`` command: subcommand -> plain function.

Training flags are derived from the config dataclasses (one source of truth); a YAML file given
with ``--config`` holds the same keys, and flags given on the command line override it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from tunelab import __version__, cliargs
from tunelab import config as C
from tunelab.errors import TunelabError

EXAMPLES = """examples:
  tunelab train --task text-classification --model minilm-l6 \\
      --train data/en_sentiment/train.csv --validation data/en_sentiment/validation.csv \\
      --test data/en_sentiment/test.csv --method lora --output-dir runs/reviews
  tunelab evaluate --model-dir runs/reviews --data data/en_sentiment/test.csv
  tunelab train --continue-from runs/reviews --train new.csv --validation new_val.csv \\
      --continual replay --output-dir runs/reviews-2    # new data, new labels, no forgetting
  tunelab evaluate --model-dir runs/reviews-2 --stages  # every stage's test set
  echo "a gorgeous, moving film" | tunelab predict --model-dir runs/reviews
  tunelab methods                       # fine-tuning methods, their defaults and tasks
  tunelab compare ... --methods full,lora,ia3,adapter --output-dir runs/compare
  tunelab export --model-dir runs/reviews --merge --output-dir exports/reviews
"""


def cmd_train(a: argparse.Namespace) -> int:
    import os

    from tunelab.training.pipeline import run_training

    overrides = {k: v for k, v in vars(a).items() if k in C.fields()}
    cfg = C.build(overrides, a.config)
    if cfg.train.num_processes > 1 and "WORLD_SIZE" not in os.environ:
        return launch(cfg.train.num_processes, a.argv)
    from tunelab.tasks import get_task
    from tunelab.training.loop import Interrupted

    try:
        run_dir, metrics = run_training(cfg)
    except Interrupted as e:
        where = f"; checkpoint saved in {e.checkpoint}" if e.checkpoint else ""
        print(
            f"tunelab: interrupted at step {e.step}{where}\nresume with the same command "
            "plus --resume",
            file=sys.stderr,
        )
        return 130
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # the main process reports
    keys = get_task(cfg.data.task).summary_metrics
    summary = {
        split: {k: metrics[split][k] for k in keys}
        for split in ("validation", "test")
        if split in metrics
    }
    for split, m in metrics.get("before_training", {}).items():  # generation: the base model
        summary[f"{split}_before_training"] = {k: m[k] for k in keys}
    summary["train_seconds"] = round(metrics["training"]["train_seconds"], 1)
    summary["examples_per_s"] = round(metrics["training"]["examples_per_s"], 1)
    print(json.dumps(summary))
    print(f"run folder: {run_dir}\nreport:     {run_dir / 'report.html'}")
    return 0


def launch(n: int, argv: list[str]) -> int:
    """Run this same command in ``n`` data-parallel processes with torchrun (PyTorch's own
    launcher; rendezvous on this machine). Returns the launcher's exit code."""
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={n}",
        "-m",
        "tunelab",
        *argv,
    ]
    print(
        f"tunelab: starting {n} processes: torchrun --standalone --nproc-per-node={n} "
        f"-m tunelab {' '.join(argv)}",
        file=sys.stderr,
        flush=True,
    )
    return subprocess.call(cmd)


def cmd_evaluate(a: argparse.Namespace) -> int:
    import tunelab
    from tunelab.data_policy import reading_policy

    policy = cliargs.read_policy(a)
    if a.stages:  # a continued run: every stage's recorded test file
        from tunelab.evaluation.stages import evaluate_stages

        with reading_policy(policy):
            metrics = evaluate_stages(a.model_dir, batch_size=a.batch_size)
        print(json.dumps(metrics, ensure_ascii=False))
        return 0
    if not a.data:
        raise TunelabError("tunelab evaluate needs --data FILE (or --stages for a continued run)")
    m = tunelab.load(a.model_dir)
    with reading_policy(policy):
        metrics = m.evaluate(a.data, a.text_column, a.label_column, batch_size=a.batch_size)
    print(json.dumps(metrics, ensure_ascii=False))
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    import tunelab
    from tunelab.data.readers import read_texts
    from tunelab.data_policy import reading_policy

    policy = cliargs.read_policy(a)
    m = tunelab.load(a.model_dir)
    column = a.text_column or m.info.text_column
    with reading_policy(policy):
        if m.task.read_inputs is not None:  # e.g. question answering: question plus context
            rows = m.task.read_inputs(a.input, column)
        else:
            rows = [({"text": t}, t) for _, t in read_texts(a.input, column)]
    preds = m.predict([item for _, item in rows], batch_size=a.batch_size)
    lines = [
        json.dumps({**shown, **p}, ensure_ascii=False)
        for (shown, _), p in zip(rows, preds, strict=True)
    ]
    text = "\n".join(lines) + "\n"
    if a.output in (None, "-"):
        sys.stdout.write(text)
    else:
        from pathlib import Path

        from tunelab.files import atomic_write_text

        out = Path(a.output)
        atomic_write_text(out, text, what="predictions")
        print(f"wrote {len(lines)} predictions to {out}", file=sys.stderr)
    return 0


def cmd_models(a: argparse.Namespace) -> int:
    from tunelab.models import ALIASES

    for al in ALIASES.values():
        print(f"{al.name:<12} {al.languages:<8} {al.description}\n{'':<21} install: {al.install}")
    print("\nAny local Hugging Face model folder or hub id (with internet) also works.")
    return 0


def cmd_methods(a: argparse.Namespace) -> int:
    from tunelab.methods import METHODS
    from tunelab.tasks import TASKS

    for m in METHODS.values():
        tasks = "all" if len(m.tasks()) == len(TASKS) else ", ".join(m.tasks())
        options = [f"{f.name}={f.default}" for f in m.option_fields()]
        extra = (f" | options: {', '.join(options)}" if options else "") + (
            " | mergeable" if m.merge else ""
        )
        print(
            f"{m.name:<14} {m.description}\n{'':<15}lr {m.default_learning_rate:g} | "
            f"tasks: {tasks}{extra}"
        )
    return 0


def cmd_runs(a: argparse.Namespace) -> int:
    from pathlib import Path

    from tunelab import run_index

    if a.compare:
        print(run_index.compare_runs(*a.compare))
    elif a.clean_partial:
        deleted, kept = run_index.clean_leftovers(a.dir)
        for name in deleted:
            print(f"deleted {Path(a.dir) / name}")
        for row in kept:
            print(f"tunelab: kept {Path(a.dir) / row['folder']}: {row['why']}", file=sys.stderr)
        if not deleted and not kept:
            print(f"no hidden folders of interrupted runs in {a.dir}")
    else:
        print(run_index.format_runs(run_index.list_runs(a.dir)))
        if text := run_index.format_leftovers(run_index.leftovers(a.dir), a.dir):
            print(text)
    return 0


def cmd_tasks(a: argparse.Namespace) -> int:
    from tunelab.tasks import TASKS

    for name, task in TASKS.items():
        print(f"{name:<20} {task.description}")
    return 0


def add_train(sub) -> None:
    t = sub.add_parser(
        "train",
        help="fine-tune a model and write a run folder",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
        description="Fine-tune a model. Every option can also be a key in the "
        "--config YAML file; flags override the file.",
    )
    t.add_argument("--config", help="YAML file with the same keys as these flags")
    cliargs.add_config_flags(t)
    t.set_defaults(func=cmd_train)


def add_evaluate(sub) -> None:
    e = sub.add_parser(
        "evaluate", allow_abbrev=False, help="print one JSON object of metrics on a labelled file"
    )
    e.add_argument("--model-dir", required=True, help="run folder from `tunelab train`")
    e.add_argument("--data", help="labelled .csv/.tsv/.jsonl file")
    e.add_argument(
        "--stages",
        action="store_true",
        help="a run made with --continue-from: score every stage's recorded test file and "
        "report forgetting since each stage was trained",
    )
    e.add_argument("--text-column", help="default: the column used in training")
    e.add_argument("--label-column", help="default: the column used in training")
    e.add_argument("--batch-size", type=int, default=64)
    cliargs.read_policy_flags(e)
    e.set_defaults(func=cmd_evaluate)


def add_predict(sub) -> None:
    pr = sub.add_parser(
        "predict", allow_abbrev=False, help="write one JSON object of predictions per text"
    )
    pr.add_argument("--model-dir", required=True, help="run folder from `tunelab train`")
    pr.add_argument(
        "--input",
        help="a .csv/.tsv/.jsonl/.txt file; default: stdin, one text "
        "per line (question-answering: JSON objects with question "
        "and context, one per line)",
    )
    pr.add_argument("--output", help="JSONL file to write; default: stdout")
    pr.add_argument("--text-column", help="default: the column used in training")
    pr.add_argument("--batch-size", type=int, default=64)
    cliargs.read_policy_flags(pr)
    pr.set_defaults(func=cmd_predict)


def add_runs(sub) -> None:
    r = sub.add_parser(
        "runs", allow_abbrev=False, help="list runs (finished, running, resumable) or compare two"
    )
    r.add_argument(
        "dir", nargs="?", default="runs", help="folder holding run folders (default: runs)"
    )
    r.add_argument(
        "--compare",
        nargs=2,
        metavar=("RUN_A", "RUN_B"),
        help="two run folders: differing settings and metrics side by side",
    )
    r.add_argument(
        "--clean-partial",
        action="store_true",
        help="delete the hidden .NAME.partial-PID folders of killed runs (those whose process "
        "is gone; a running one is kept); their checkpoints stay, so --resume still works",
    )
    r.set_defaults(func=cmd_runs)


def _listing(name: str, fn: Callable[[argparse.Namespace], int], help_: str):
    def add(sub) -> None:
        sub.add_parser(name, help=help_).set_defaults(func=fn)

    return add


add_models = _listing("models", cmd_models, "list the offline model aliases")
add_methods = _listing("methods", cmd_methods, "list fine-tuning methods")
add_tasks = _listing("tasks", cmd_tasks, "list tasks")

# Every subcommand, in the order `tunelab --help` lists them: name -> the function (module:name)
# that declares its arguments and handler. A system on top of the engine adds its row here.
# allow_abbrev=False everywhere: a mistyped --learning-rat must be an error, not a prefix match.
COMMANDS: dict[str, str] = {
    "plan": "tunelab.planning.cli:add_plan",
    "train": "tunelab.cli:add_train",
    "evaluate": "tunelab.cli:add_evaluate",
    "predict": "tunelab.cli:add_predict",
    "compare": "tunelab.evaluation.compare_cli:add_compare",
    "export": "tunelab.export.cli:add_export",
    "runs": "tunelab.cli:add_runs",
    "serve": "tunelab.serving.launch:add_serve",
    "studio": "tunelab.studio.cli:add_studio",
    "monitor": "tunelab.monitor.cli:add_monitor",
    "assistant": "tunelab.assistant.cli:add_assistant",
    "keys": "tunelab.serving.launch:add_keys",
    "register": "tunelab.functions.cli:add_register",
    "functions": "tunelab.functions.cli:add_functions",
    "route": "tunelab.functions.cli:add_route",
    "chat": "tunelab.functions.cli:add_chat",
    "route-train": "tunelab.functions.cli:add_route_train",
    "planner-train": "tunelab.planning.planner_cli:add_planner_train",
    "pretrain": "tunelab.pretrain_cli:add_pretrain",
    "music": "tunelab.music.cli:add_music",
    "augment": "tunelab.overfit_cli:add_augment",
    "ensemble": "tunelab.overfit_cli:add_ensemble",
    "search": "tunelab.overfit_cli:add_search",
    "models": "tunelab.cli:add_models",
    "methods": "tunelab.cli:add_methods",
    "tasks": "tunelab.cli:add_tasks",
}


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser(
        prog="tunelab",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a pretrained transformer on your labelled CSV/TSV/JSONL file, "
        "evaluate it, and predict with it.",
        epilog=EXAMPLES,
    )
    p.add_argument("--version", action="version", version=f"tunelab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, where in COMMANDS.items():
        module, func = where.split(":")
        getattr(importlib.import_module(module), func)(sub)
        assert name in sub.choices, f"{where} did not add the {name!r} subcommand"
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tunelab`` console script. Returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for relaunching under torchrun
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except TunelabError as e:
        print(f"tunelab: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tunelab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
