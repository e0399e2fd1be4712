"""``tunelab register`` and ``tunelab functions`` (registered by tunelab.cli)."""

from __future__ import annotations

import json
from pathlib import Path


def add_parsers(sub) -> None:
    r = sub.add_parser("register", allow_abbrev=False,
                       help="back a function (analyze_sentiment, classify, ...) with a model",
                       description="Map NAME to a run or export folder in the model registry "
                                   "(models.yaml; $TUNELAB_MODELS names another file). NAME is "
                                   "a function (analyze_sentiment, classify, score, "
                                   "extract_entities, answer, generate) or any name that "
                                   "classify(text, model=NAME) / score(...) will use.",
                       epilog="example:\n  tunelab register analyze_sentiment runs/reviews")
    r.add_argument("name")
    r.add_argument("folder", help="run or export folder")
    r.add_argument("--file", help="registry file (default: $TUNELAB_MODELS, ./models.yaml, "
                                  "~/.config/tunelab/models.yaml, first that exists)")
    r.set_defaults(func=cmd_register)
    f = sub.add_parser("functions", allow_abbrev=False,
                       help="list the task functions and their models, or print tool schemas")
    f.add_argument("--schema", action="store_true",
                   help="print JSON Schema tool definitions (OpenAI function-calling format)")
    f.set_defaults(func=cmd_functions)


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
    from tunelab.functions import FUNCTIONS
    from tunelab.functions.registry import TASK_OF, read_registry, registry_path

    reg = read_registry()
    print(f"registry: {registry_path()}")
    for name, fn in FUNCTIONS.items():
        summary = (fn.__doc__ or "").strip().splitlines()[0]
        print(f"{name:<18} {TASK_OF[name]:<21} {reg.get(name, '(not registered)')}\n"
              f"{'':<18} {summary}")
    others = {k: v for k, v in reg.items() if k not in FUNCTIONS}
    for name, folder in others.items():
        print(f"{name:<18} {'(model= name)':<21} {folder}")
    return 0
