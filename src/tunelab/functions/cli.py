"""``tunelab register`` and ``tunelab functions`` (registered by tunelab.cli)."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.cliargs import ExamplesFormatter


def add_register(sub) -> None:
    from tunelab.functions import FUNCTIONS

    r = sub.add_parser(
        "register",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="back a function (analyze_sentiment, classify, ...) with a model",
        description="Map NAME to a run or export folder (or the kind of folder "
        "the function is backed by) in the model registry "
        "(models.yaml; $TUNELAB_MODELS names another file). NAME is "
        f"a function ({', '.join(FUNCTIONS)}) or any name that "
        "classify(text, model=NAME) / score(...) will use.",
        epilog="example:\n  tunelab register analyze_sentiment runs/reviews",
    )
    r.add_argument("name")
    r.add_argument("folder", help="run or export folder (or the function's kind of folder)")
    r.add_argument(
        "--file",
        help="registry file (default: $TUNELAB_MODELS, ./models.yaml, "
        "~/.config/tunelab/models.yaml, first that exists)",
    )
    r.set_defaults(func=cmd_register)


def add_functions(sub) -> None:
    f = sub.add_parser(
        "functions",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="list the task functions and their models, or print tool schemas",
    )
    f.add_argument(
        "--schema",
        action="store_true",
        help="print JSON Schema tool definitions (OpenAI function-calling format)",
    )
    f.set_defaults(func=cmd_functions)


def _router_flags(p) -> None:
    from tunelab.functions.router import DEFAULT_THRESHOLD

    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="below this routing confidence, call nothing and list the "
        f"candidates (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--router", metavar="DIR", help="router folder (default: the model registered as 'route')"
    )


def add_route(sub) -> None:
    r = sub.add_parser(
        "route",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="route a plain-language request to a task function and call it",
        description="Pick the task function for REQUEST with the router (a "
        "fine-tuned intent classifier, see route-train), fill its "
        "arguments, call it and print JSON: function, confidence, "
        "arguments, result. Below --threshold, or when no function "
        "fits, it calls nothing and prints the candidates (exit "
        "code 3).",
        epilog='example:\n  tunelab route "is this review positive? the '
        'battery died after two days"',
    )
    r.add_argument("request")
    _router_flags(r)
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="pick the function and fill its arguments (or plan a compound request), but do "
        "not call anything",
    )
    _plan_flags(r)
    r.set_defaults(func=cmd_route)


def _plan_flags(p) -> None:
    p.add_argument(
        "--planner",
        choices=("auto", "model", "rules", "off"),
        default="auto",
        help="compound requests (several texts, or several steps: 'find the negative ones and "
        "list the companies they mention'): planned by the model registered as 'planner' "
        "(auto: when there is one, else the rules), always the rules, or never (off: the "
        "router picks one function)",
    )


def add_chat(sub) -> None:
    c = sub.add_parser(
        "chat",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="a small REPL over the router",
        description="Type requests, get routed answers; a compound request is planned, run "
        "and summarised. 'quit' or Ctrl-D ends.",
    )
    _router_flags(c)
    _plan_flags(c)
    c.set_defaults(func=cmd_chat)


# route-train is `tunelab train` with other defaults: the router's data, model and method
ROUTE_TRAIN_DEFAULTS = {
    "task": "text-classification",
    "model": "gemma3-270m",
    "method": "lora",
    "batch_size": 16,
    "epochs": 3.0,
    "output_dir": "runs/router",
}
# settings route-train makes itself (the data come from the function registry or --data)
ROUTE_TRAIN_FIXED = ("task", "train", "validation", "test", "text_column", "label_column")


def add_route_train(sub) -> None:
    from tunelab.cliargs import add_config_flags

    t = sub.add_parser(
        "route-train",
        allow_abbrev=False,
        formatter_class=ExamplesFormatter,
        help="train the router on the shipped English and Chinese requests",
        description="Fine-tune the router (an intent classifier over the task "
        "functions) on the example requests shipped with tunelab, "
        "measure it on the held-out requests (new phrasings, English "
        "and Chinese), and register it as 'route'.",
        epilog="example:\n  tunelab route-train --output-dir runs/router",
    )
    t.add_argument("--config", help="YAML file with training keys (as for `tunelab train`)")
    t.add_argument(
        "--data",
        metavar="DIR",
        help="your own example requests instead of the registered functions' ones: "
        "train.csv, validation.csv and test.csv with text, label (a function "
        "name or 'none') and lang columns",
    )
    t.add_argument(
        "--no-register", action="store_true", help="do not register the router in models.yaml"
    )
    add_config_flags(t, exclude=ROUTE_TRAIN_FIXED, defaults=ROUTE_TRAIN_DEFAULTS)
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
        print(
            f"{f.name:<18} {_needs(f):<21} {reg.get(f.name, '(not registered)')}\n"
            f"{'':<18} {summary}"
        )
    others = {k: v for k, v in reg.items() if k not in FUNCTIONS}
    for name, folder in others.items():
        print(f"{name:<18} {'(model= name)':<21} {folder}")
    return 0


def _needs(f) -> str:
    """What a function's folder must be, for the listing: a run's task, else its kind."""
    if f.folder_kind == "run":
        return f.task or "(any run)"
    return f"{f.folder_kind}: {f.task}" if f.task else f"({f.folder_kind} folder)"


def routed_json(r) -> dict:
    from tunelab.functions import as_json

    out = {
        "request": r.request,
        "function": r.function,
        "confidence": round(r.confidence, 4),
        "candidates": [{"function": f, "probability": round(p, 4)} for f, p in r.candidates],
    }
    if r.unsure:
        out["unsure"] = True
        out["reason"] = (
            "no task function serves this request"
            if r.out_of_scope
            else "routing confidence under the threshold"
        )
    else:
        out["arguments"] = r.arguments
        out["result"] = as_json(r.result)
    return out


def _compound(request: str, a, execute: bool) -> dict | None:
    """The planned (and run) compound request, or None when it takes the router's path."""
    if a.planner == "off":
        return None
    from tunelab.planning.compound import looks_compound, run_request

    if a.planner == "model":
        from tunelab.errors import TunelabError
        from tunelab.planning.planner import model_planner

        if model_planner() is None:
            raise TunelabError("no planner registered; train one: tunelab planner-train")
    if not looks_compound(request):
        return None
    return run_request(request, execute, use_rules=a.planner == "rules")


def cmd_route(a) -> int:
    from tunelab.functions.router import plan, route

    planned = _compound(a.request, a, not a.dry_run)
    if planned is not None:
        print(json.dumps(planned, ensure_ascii=False, indent=2, default=str))
        return 3 if "refused" in planned else 0
    r = (
        plan([a.request], a.threshold, a.router)[0]
        if a.dry_run
        else route(a.request, a.threshold, a.router)
    )
    print(json.dumps(routed_json(r), ensure_ascii=False, indent=2))
    return 3 if r.unsure else 0


def cmd_chat(a) -> int:
    import sys

    from tunelab.errors import TunelabError
    from tunelab.functions.router import route, router_model

    router_model(a.router)  # fail now, not at the first question
    interactive = sys.stdin.isatty()
    if interactive:
        print(
            "tunelab chat: ask for a sentiment, a topic, a score, entities, an answer, a "
            "text or a melody. 'quit' ends."
        )
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
            planned = _compound(line, a, True)
            if planned is not None:
                print(planned.get("summary") or planned.get("refused"))
                continue
            r = route(line, a.threshold, a.router)
        except TunelabError as e:  # e.g. no model registered for the chosen function
            print(f"{e}")
            continue
        if r.out_of_scope:
            print(
                "that is not something I can do: I can judge sentiment, classify, score, "
                "find entities, answer a question about a text, write a text, or compose music."
            )
        elif r.unsure:
            options = ", ".join(f"{f} ({p:.0%})" for f, p in r.candidates)
            print(
                f"not sure what you want ({r.confidence:.0%}); did you mean: {options}? "
                "Rephrase the request."
            )
        else:
            print(f"{r.function} ({r.confidence:.0%}): {routed_json(r)['result']}")
    return 0


def cmd_route_train(a) -> int:
    from tunelab import config as C
    from tunelab.errors import TunelabError
    from tunelab.functions.registry import register
    from tunelab.functions.router import evaluate, route_dataset
    from tunelab.runs import write_json
    from tunelab.training.pipeline import run_training

    values = {**ROUTE_TRAIN_DEFAULTS, **{k: v for k, v in vars(a).items() if k in C.fields()}}
    cfg = C.build(values, a.config)
    if a.data:
        data = Path(a.data)
        for name in ("train.csv", "validation.csv", "test.csv"):
            if not (data / name).is_file():
                raise TunelabError(
                    f"{data / name}: missing (--data needs train.csv, validation.csv and test.csv)"
                )
    else:  # the registered functions' example requests, next to the run (it records them)
        out = Path(cfg.train.output_dir or "runs/router")
        data = route_dataset(out.parent / f"{out.name}.route-data")
    cfg.data.train, cfg.data.validation = str(data / "train.csv"), str(data / "validation.csv")
    cfg.data.test = str(data / "test.csv")
    run_dir, _ = run_training(cfg)
    report = evaluate(str(run_dir), data / "test.csv")  # held-out requests, per language
    write_json(Path(run_dir) / "route_eval.json", report)
    print(
        json.dumps(
            {
                k: v
                if not isinstance(v, dict)
                else {m: round(x, 4) if isinstance(x, float) else x for m, x in v.items()}
                for k, v in report.items()
            }
        )
    )
    if not a.no_register:
        p = register("route", str(run_dir))
        print(f"route -> {Path(run_dir).resolve()} (in {p})")
    print(f'router: {run_dir}\ntry:    tunelab route "is this review positive? great phone"')
    return 0
