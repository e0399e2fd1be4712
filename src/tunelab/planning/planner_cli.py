"""``tunelab planner-train``: train the planner model on requests composed over the registered
functions, measure it, and register it as ``planner``."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.cliargs import ExamplesFormatter

PLANNER_TRAIN_DEFAULTS = {
    "task": "generation",
    "model": "gemma3-270m",
    "method": "lora",
    "batch_size": 16,
    "epochs": 1.0,
    "max_length": 128,
    "max_new_tokens": 48,
    # auto: bf16 on a CPU with native bf16 (AMX / AVX-512 BF16), else fp32. On the AMX Xeon
    # the bf16 planner trained in about 13 minutes against 25 in fp32 and scored as well on
    # the dev set (compound function sequence 90% / 87% en / zh against 92% / 82%;
    # bench/results/planner_dev_bf16.json)
    "precision": "auto",
    "output_dir": "runs/planner",
}


def add_planner_train(sub) -> None:
    from tunelab.cliargs import add_config_flags
    from tunelab.functions.cli import ROUTE_TRAIN_FIXED  # the keys the command sets itself

    t = sub.add_parser(
        "planner-train",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="train the planner (compound requests -> plans of function calls)",
        description="Compose training requests (English and Chinese) over the functions "
        "registered now, from the planner's phrase banks and each function's own example "
        "requests, and add the hand-written requests shipped with tunelab whose plans call "
        "only registered functions; fine-tune a decoder to write their plans (Gemma 3 270M "
        "with LoRA by default; about 15 minutes on 2 cores with bf16, 25 in fp32); register it "
        "as 'planner', which "
        "`tunelab route`, `tunelab chat` and POST /v1/plan then use for compound requests.",
        epilog="example:\n  tunelab planner-train --output-dir runs/planner",
    )
    t.add_argument("--config", help="YAML file with training keys (as for `tunelab train`)")
    t.add_argument(
        "--examples", type=int, default=2400, help="composed training requests (default 2400)"
    )
    t.add_argument(
        "--written-copies",
        type=int,
        default=3,
        help="times each hand-written training request is repeated (default 3; 0: none)",
    )
    t.add_argument("--no-register", action="store_true", help="do not register it as 'planner'")
    add_config_flags(t, exclude=ROUTE_TRAIN_FIXED, defaults=PLANNER_TRAIN_DEFAULTS)
    t.set_defaults(func=cmd_planner_train)


def planner_dataset(out: Path, examples: int, seed: int, copies: int = 3) -> dict[str, Path]:
    """Write the planner's training and validation requests (prompt, response, and the
    request and plan they came from) as JSONL in ``out``: composed requests and the
    hand-written ones, some of each held out for validation."""
    from tunelab.files import atomic_write_text
    from tunelab.functions.catalog import text_functions
    from tunelab.planning.plan_data import make_examples
    from tunelab.planning.written import mix, written_rows

    out.mkdir(parents=True, exist_ok=True)
    n_val = min(20, max(10, examples // 40))
    names = [f.name for f in text_functions()]
    written = written_rows(names) if copies > 0 else []
    composed = make_examples(examples + n_val, seed, names)
    train, validation = mix(composed, written, copies, n_val, seed)
    files = {}
    for split, part in (("train", train), ("validation", validation)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
        files[split] = out / f"{split}.jsonl"
        atomic_write_text(files[split], text, what=f"planner {split} requests")
    return files


def cmd_planner_train(a) -> int:
    from tunelab import config as C
    from tunelab.functions.registry import register
    from tunelab.planning.planner import PLANNER
    from tunelab.training.pipeline import run_training

    values = {**PLANNER_TRAIN_DEFAULTS, **{k: v for k, v in vars(a).items() if k in C.fields()}}
    cfg = C.build(values, a.config)
    out = Path(cfg.train.output_dir or "runs/planner")
    files = planner_dataset(
        out.parent / f"{out.name}.plan-data", a.examples, cfg.train.seed, a.written_copies
    )
    cfg.data.train, cfg.data.validation = str(files["train"]), str(files["validation"])
    run_dir, metrics = run_training(cfg)
    print(json.dumps({k: metrics[k] for k in ("validation",) if k in metrics}, default=str))
    if not a.no_register:
        p = register(PLANNER, str(run_dir))
        print(f"{PLANNER} -> {Path(run_dir).resolve()} (in {p})")
    print(f'planner: {run_dir}\ntry:    tunelab route "find the negative ones and list the '
          'companies they mention: Delta lost my bag; Great stay at the Hilton"')  # fmt: skip
    return 0
