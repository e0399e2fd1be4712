"""``tunelab register`` and ``tunelab functions`` (registered by tunelab.cli)."""

from __future__ import annotations

from tunelab.helpformat import ExamplesFormatter

import json
from pathlib import Path


def add_parsers(sub) -> None:
    from tunelab.functions import FUNCTIONS

    r = sub.add_parser("register", allow_abbrev=False, formatter_class=ExamplesFormatter,
                       help="back a function (analyze_sentiment, classify, ...) with a model",
                       description="Map NAME to a run or export folder (or the kind of folder "
                                   "the function is backed by) in the model registry "
                                   "(models.yaml; $TUNELAB_MODELS names another file). NAME is "
                                   f"a function ({', '.join(FUNCTIONS)}) or any name that "
                                   "classify(text, model=NAME) / score(...) will use.",
                       epilog="example:\n  tunelab register analyze_sentiment runs/reviews")
    r.add_argument("name")
    r.add_argument("folder", help="run or export folder (or the function's kind of folder)")
    r.add_argument("--file", help="registry file (default: $TUNELAB_MODELS, ./models.yaml, "
                                  "~/.config/tunelab/models.yaml, first that exists)")
    r.set_defaults(func=cmd_register)
    f = sub.add_parser("functions", allow_abbrev=False, formatter_class=ExamplesFormatter,
                       help="list the task functions and their models, or print tool schemas")
    f.add_argument("--schema", action="store_true",
                   help="print JSON Schema tool definitions (OpenAI function-calling format)")
    f.set_defaults(func=cmd_functions)
    _add_router_parsers(sub)


def _add_router_parsers(sub) -> None:
    from tunelab.functions.router import DEFAULT_THRESHOLD

    def common(p) -> None:
        p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                       help="below this routing confidence, call nothing and list the "
                            f"candidates (default {DEFAULT_THRESHOLD})")
        p.add_argument("--router", metavar="DIR",
                       help="router folder (default: the model registered as 'route')")

    r = sub.add_parser("route", allow_abbrev=False, formatter_class=ExamplesFormatter,
                       help="route a plain-language request to a task function and call it",
                       description="Pick the task function for REQUEST with the router (a "
                                   "fine-tuned intent classifier, see route-train), fill its "
                                   "arguments, call it and print JSON: function, confidence, "
                                   "arguments, result. Below --threshold, or when no function "
                                   "fits, it calls nothing and prints the candidates (exit "
                                   "code 3).",
                       epilog="example:\n  tunelab route \"is this review positive? the "
                              "battery died after two days\"")
    r.add_argument("request")
    common(r)
    r.add_argument("--dry-run", action="store_true",
                   help="pick the function and fill its arguments, but do not call it")
    r.set_defaults(func=cmd_route)
    c = sub.add_parser("chat", allow_abbrev=False, formatter_class=ExamplesFormatter,
                       help="a small REPL over the router",
                       description="Type requests, get routed answers; 'quit' or Ctrl-D "
                                   "ends.")
    common(c)
    c.set_defaults(func=cmd_chat)
    t = sub.add_parser("route-train", allow_abbrev=False, formatter_class=ExamplesFormatter,
                       help="train the router on the shipped English and Chinese requests",
                       description="Fine-tune the router (an intent classifier over the task "
                                   "functions) on the example requests shipped with tunelab, "
                                   "measure it on the held-out requests (new phrasings, English "
                                   "and Chinese), and register it as 'route'.",
                       epilog="example:\n  tunelab route-train --output-dir runs/router")
    t.add_argument("--output-dir", default="runs/router")
    t.add_argument("--data", metavar="DIR",
                   help="your own example requests instead of the shipped ones: train.csv, "
                        "validation.csv and test.csv with text, label (a function name or "
                        "'none') and lang columns")
    t.add_argument("--model", default="gemma3-270m",
                   help="base model; it must read English and Chinese (default gemma3-270m)")
    t.add_argument("--method", default="lora")
    t.add_argument("--epochs", type=float, default=3.0)
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--learning-rate", type=float)
    t.add_argument("--max-length", type=int, default=128, help="most tokens per request")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--no-register", action="store_true",
                   help="do not register the router in models.yaml")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    t.set_defaults(func=cmd_route_train)


def cmd_register(a) -> int:
    from tunelab.functions.registry import register

    p = register(a.name, a.folder, Path(a.file) if a.file else None)
    print(f"{a.name} -> {Path(a.folder).resolve()} (in {p})")
    return 0


def cmd_functions(a) -> int:
    if a.schema:
        from tunelab.functions.schema import tools

        print(json.dumps(tools(), indent=2))
        return 0
    from tunelab.functions import FUNCTIONS, task_functions
    from tunelab.functions.registry import read_registry, registry_path

    reg = read_registry()
    print(f"registry: {registry_path()}")
    for f in task_functions():
        summary = ((f.func.__doc__ or "").strip().splitlines() or [""])[0]
        print(f"{f.name:<18} {_needs(f):<21} {reg.get(f.name, '(not registered)')}\n"
              f"{'':<18} {summary}")
    others = {k: v for k, v in reg.items() if k not in FUNCTIONS}
    for name, folder in others.items():
        print(f"{name:<18} {'(model= name)':<21} {folder}")
    return 0


def _needs(f) -> str:
    """What a function's folder must be, for the listing: a run's task, else its kind."""
    if f.folder_kind == "run":
        return f.task or "(any run)"
    return f"{f.folder_kind}: {f.task}" if f.task else f"({f.folder_kind} folder)"


def _routed_json(r) -> dict:
    from tunelab.functions import as_json

    out = {"request": r.request, "function": r.function, "confidence": round(r.confidence, 4),
           "candidates": [{"function": f, "probability": round(p, 4)}
                          for f, p in r.candidates]}
    if r.unsure:
        out["unsure"] = True
        out["reason"] = ("no task function serves this request" if r.out_of_scope else
                         "routing confidence under the threshold")
    else:
        out["arguments"] = r.arguments
        out["result"] = as_json(r.result)
    return out


def cmd_route(a) -> int:
    from tunelab.functions.router import plan, route

    r = (plan([a.request], a.threshold, a.router)[0] if a.dry_run
         else route(a.request, a.threshold, a.router))
    print(json.dumps(_routed_json(r), ensure_ascii=False, indent=2))
    return 3 if r.unsure else 0


def cmd_chat(a) -> int:
    import sys

    from tunelab.errors import TunelabError
    from tunelab.functions.router import route, router_model

    router_model(a.router)  # fail now, not at the first question
    interactive = sys.stdin.isatty()
    if interactive:
        print("tunelab chat: ask for a sentiment, a topic, a score, entities, an answer or a "
              "text. 'quit' ends.")
    while True:
        try:
            line = input("> " if interactive else "")
        except EOFError:
            break
        line = line.strip()
        if not line:
            continue
        if line.lower() in ("quit", "exit", ":q", "退出"):
            break
        try:
            r = route(line, a.threshold, a.router)
        except TunelabError as e:  # e.g. no model registered for the chosen function
            print(f"{e}")
            continue
        if r.out_of_scope:
            print("that is not something I can do: I can judge sentiment, classify, score, "
                  "find entities, answer a question about a text, or write a text.")
        elif r.unsure:
            options = ", ".join(f"{f} ({p:.0%})" for f, p in r.candidates)
            print(f"not sure what you want ({r.confidence:.0%}); did you mean: {options}? "
                  "Rephrase the request.")
        else:
            print(f"{r.function} ({r.confidence:.0%}): {_routed_json(r)['result']}")
    return 0


def cmd_route_train(a) -> int:
    import os

    from tunelab import config as C
    from tunelab.functions.registry import register
    from tunelab.functions.router import DATA, evaluate
    from tunelab.errors import TunelabError
    from tunelab.training.pipeline import run_training

    data = Path(a.data) if a.data else DATA
    for name in ("train.csv", "validation.csv", "test.csv"):
        if not (data / name).is_file():
            raise TunelabError(f"{data / name}: missing (--data needs train.csv, "
                               "validation.csv and test.csv)")
    overrides = {"task": "text-classification", "model": a.model, "method": a.method,
                 "train": str(data / "train.csv"), "validation": str(data / "validation.csv"),
                 "test": str(data / "test.csv"), "output_dir": a.output_dir,
                 "epochs": a.epochs, "batch_size": a.batch_size, "seed": a.seed,
                 "max_length": a.max_length,
                 "overwrite": a.overwrite, "progress": a.progress}
    if a.learning_rate is not None:
        overrides["learning_rate"] = a.learning_rate
    run_dir, _ = run_training(C.build(overrides))
    report = evaluate(str(run_dir), data / "test.csv")  # held-out requests, per language
    tmp = Path(run_dir) / "route_eval.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, Path(run_dir) / "route_eval.json")
    print(json.dumps({k: v if not isinstance(v, dict) else
                      {m: round(x, 4) if isinstance(x, float) else x for m, x in v.items()}
                      for k, v in report.items()}))
    if not a.no_register:
        p = register("route", str(run_dir))
        print(f"route -> {Path(run_dir).resolve()} (in {p})")
    print(f"router: {run_dir}\ntry:    tunelab route \"is this review positive? great phone\"")
    return 0
