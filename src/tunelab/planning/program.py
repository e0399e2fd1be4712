"""A plan of task-function calls: a small JSON program, checked before anything runs, then
executed with a trace.

    [{"call": "analyze_sentiment", "over": "input"},
     {"filter": 1, "where": ["label", "==", "negative"]},
     {"call": "extract_entities", "over": 2}]

Steps are numbered from 1. A **call** step calls a registered task function on every item of
its source: ``"input"`` (the texts the request carries) or an earlier step (the items that step
was called on, or the items a filter kept). The item goes to the function's item parameter
(``text``, ``question``, ``prompt``; ``context`` for ``answer``); ``args`` holds the others
(``answer``'s ``question``). A **filter** step keeps the items whose result in an earlier call
step passes ``[field, op, value]``: ``label``, ``score``, ``value`` (a number), ``text``,
``handoff``, ``count`` and ``types`` (entities), with ``== != < <= > >=`` and ``has``.

Which functions exist, their parameters and their result fields come from the function
catalog and the functions' type hints, so a function registered elsewhere (``answer_faq``,
``compose_music``) can be planned with no change here.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
import time
import typing
from dataclasses import dataclass, field
from typing import Any

from tunelab.errors import TunelabError

MAX_STEPS = 6
OPS: dict[str, Any] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge, "has": lambda a, b: b in (a or []),
}  # fmt: skip
NUMERIC_OPS = ("<", "<=", ">", ">=")
LIST_FIELDS = {"entities": ("count", "types", "entities")}  # a list result's fields


class PlanError(TunelabError):
    """A plan that cannot run: an unknown function, a bad reference, too many steps."""


@dataclass(frozen=True)
class Step:
    number: int
    call: str | None = None
    over: str | int | None = None
    args: dict = field(default_factory=dict)
    filter: int | None = None
    where: tuple | None = None

    def to_json(self) -> dict:
        if self.call is not None:
            out: dict[str, Any] = {"call": self.call, "over": self.over}
            if self.args:
                out["args"] = dict(self.args)
            return out
        return {"filter": self.filter, "where": list(self.where or ())}


def item_parameter(name: str) -> str:
    """The parameter of function ``name`` that receives each item (``context`` for a
    question-answering function, else its first required parameter)."""
    params = _parameters(name)
    if "context" in params:
        return "context"
    required = [k for k, p in params.items() if p.default is inspect.Parameter.empty]
    return required[0] if required else next(iter(params))


def result_fields(name: str) -> set[str]:
    """Fields a filter may test on function ``name``'s result, from its return annotation:
    a dataclass's fields; ``value`` for a number; ``text`` for a string; ``count``, ``types``
    and ``entities`` for a list of records."""
    fn = _function(name)
    hint = typing.get_type_hints(fn.func).get("return")
    for tp in typing.get_args(hint) or (hint,):
        if dataclasses.is_dataclass(tp):
            return {f.name for f in dataclasses.fields(tp)}
        if tp in (int, float):
            return {"value"}
        if tp is str:
            return {"text"}
        if typing.get_origin(tp) is list:
            (inner,) = typing.get_args(tp)
            if dataclasses.is_dataclass(inner):
                return set(LIST_FIELDS["entities"])
    return {"value"}


def view(result: Any) -> dict:
    """A result as the fields a filter reads (see :func:`result_fields`)."""
    from tunelab.functions import as_json

    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if not isinstance(result, (str, list)):  # a number (or anything else): its value
        return {"value": result}
    if isinstance(result, str):
        return {"text": result}
    items = as_json(result)
    types = sorted({str(x["type"]) for x in items if isinstance(x, dict) and x.get("type")})
    return {"entities": items, "count": len(items), "types": types}


def _function(name: str):
    from tunelab.functions.catalog import get_function, task_functions

    fn = get_function(name)
    if fn is None:
        known = ", ".join(f.name for f in task_functions())
        raise PlanError(f"{name!r} is not a registered function (known: {known})")
    return fn


def _parameters(name: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(_function(name).func).parameters)


def parse(plan: Any, max_steps: int = MAX_STEPS) -> list[Step]:
    """Check a plan (a list of step objects, or ``{"steps": [...]}``) against the function
    catalog and the functions' signatures; the steps, or a PlanError naming the step."""
    steps_in = plan.get("steps") if isinstance(plan, dict) else plan
    if not isinstance(steps_in, list) or not steps_in:
        raise PlanError("a plan is a non-empty list of steps")
    if len(steps_in) > max_steps:
        raise PlanError(f"the plan has {len(steps_in)} steps; at most {max_steps} are allowed")
    steps: list[Step] = []
    for n, raw in enumerate(steps_in, start=1):
        if not isinstance(raw, dict) or ("call" in raw) == ("filter" in raw):
            raise PlanError(f"step {n}: expected {{'call': ..., 'over': ...}} or "
                            "{'filter': N, 'where': [field, op, value]}")  # fmt: skip
        steps.append(_call(n, raw, steps) if "call" in raw else _filter(n, raw, steps))
    return steps


def _source(n: int, ref: Any, steps: list[Step], what: str) -> str | int:
    if ref == "input":
        return "input"
    if isinstance(ref, bool) or not isinstance(ref, int) or not 1 <= ref < n:
        raise PlanError(f"step {n}: {what} must be 'input' or an earlier step (1-{n - 1}), "
                        f"not {ref!r}")  # fmt: skip
    return ref


def _call(n: int, raw: dict, steps: list[Step]) -> Step:
    name = raw["call"]
    if not isinstance(name, str):
        raise PlanError(f"step {n}: 'call' must be a function name")
    try:
        params = _parameters(name)
    except PlanError as e:
        raise PlanError(f"step {n}: {e}") from None
    over = _source(n, raw.get("over", "input"), steps, "'over'")
    args = raw.get("args") or {}
    if not isinstance(args, dict):
        raise PlanError(f"step {n}: 'args' must be an object")
    item = item_parameter(name)
    hints = typing.get_type_hints(_function(name).func)
    for k, v in args.items():
        if k not in params or k == item:
            allowed = ", ".join(p for p in params if p != item) or "none"
            raise PlanError(f"step {n}: {name} has no argument {k!r} to set (allowed: {allowed})")
        if not _fits(v, hints.get(k)):
            raise PlanError(f"step {n}: {name}'s {k!r} must be {_type_name(hints.get(k))}")
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty
               and k != item and k not in args]  # fmt: skip
    if missing:
        raise PlanError(f"step {n}: {name} needs {', '.join(missing)} in 'args'")
    return Step(n, call=name, over=over, args=dict(args))


def _filter(n: int, raw: dict, steps: list[Step]) -> Step:
    ref = _source(n, raw["filter"], steps, "'filter'")
    if ref == "input" or steps[int(ref) - 1].call is None:
        raise PlanError(f"step {n}: a filter tests the results of an earlier call step")
    where = raw.get("where")
    if not isinstance(where, list) or len(where) != 3:
        raise PlanError(f"step {n}: 'where' must be [field, op, value]")
    fld, op, value = where
    called = steps[int(ref) - 1].call
    assert called is not None
    fields_ = result_fields(called)
    if fld not in fields_:
        raise PlanError(f"step {n}: {called}'s result has no field {fld!r} "
                        f"(it has: {', '.join(sorted(fields_))})")  # fmt: skip
    if op not in OPS:
        raise PlanError(f"step {n}: unknown operator {op!r} (use {' '.join(OPS)})")
    if op in NUMERIC_OPS and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise PlanError(f"step {n}: {op} compares with a number, not {value!r}")
    if op == "has" and fld != "types":
        raise PlanError(f"step {n}: 'has' tests the entity types ('types')")
    return Step(n, filter=int(ref), where=(fld, op, value))


def _fits(value: Any, hint: Any) -> bool:
    if hint is None:
        return True
    kinds = typing.get_args(hint) or (hint,)
    for k in kinds:
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if k in (str, bool) and type(value) is k:
            return True
    return False


def _type_name(hint: Any) -> str:
    kinds = typing.get_args(hint) or (hint,)
    return " or ".join(getattr(k, "__name__", str(k)) for k in kinds)


# --- execution ---------------------------------------------------------------------------
@dataclass
class Execution:
    """What running a plan did: per step its inputs, outputs and seconds (``trace``), and the
    items each step passed on (``items``: step number -> items)."""

    steps: list[Step]
    trace: list[dict] = field(default_factory=list)
    items: dict[int | str, list] = field(default_factory=dict)
    results: dict[int, list] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"plan": [s.to_json() for s in self.steps], "trace": self.trace}


def execute(steps: list[Step], inputs: list[str], max_texts: int | None = None) -> Execution:
    """Run ``steps`` over ``inputs``; each call is one batched call of its function.

    Raises:
        PlanError when the input list is over ``max_texts`` (the HTTP API's limit).
    """
    from tunelab.functions import FUNCTIONS, as_json

    if max_texts is not None and len(inputs) > max_texts:
        raise PlanError(f"{len(inputs)} texts in one request; the limit is {max_texts}")
    run = Execution(steps)
    run.items["input"] = list(inputs)
    for s in steps:
        started = time.perf_counter()
        if s.call is not None:
            assert s.over is not None
            items = run.items[s.over]
            results = _call_over(FUNCTIONS[s.call], s.call, items, s.args) if items else []
            run.items[s.number], run.results[s.number] = list(items), results
            out = [{"item": i, "result": as_json(r)} for i, r in zip(items, results, strict=True)]
        else:
            assert s.filter is not None and s.where is not None
            fld, op, value = s.where
            src_items, src_results = run.items[s.filter], run.results[s.filter]
            kept = [(i, r) for i, r in zip(src_items, src_results, strict=True)
                    if _passes(view(r).get(fld), op, value)]  # fmt: skip
            run.items[s.number] = [i for i, _ in kept]
            run.results[s.number] = [r for _, r in kept]
            out = [{"item": i} for i, _ in kept]
        run.trace.append({
            "step": s.number, **s.to_json(), "inputs": len(run.items.get(
                s.over if s.call is not None else s.filter, [])),  # type: ignore[arg-type]
            "outputs": out, "seconds": round(time.perf_counter() - started, 4),
        })  # fmt: skip
    return run


def _call_over(fn, name: str, items: list, args: dict) -> list:
    item = item_parameter(name)
    hint = typing.get_type_hints(fn).get(item)
    takes_list = any(typing.get_origin(k) is list for k in (typing.get_args(hint) or (hint,)))
    if takes_list:
        out = fn(**{item: list(items)}, **args)
        return list(out)
    return [fn(**{item: x}, **args) for x in items]


def _passes(got: Any, op: str, value: Any) -> bool:
    if got is None:
        return False
    if op in NUMERIC_OPS and not isinstance(got, (int, float)):
        return False
    if isinstance(got, str) and isinstance(value, str) and op in ("==", "!="):
        return OPS[op](got.strip().lower(), value.strip().lower())
    try:
        return bool(OPS[op](got, value))
    except TypeError:
        return False


def terminal_steps(steps: list[Step]) -> list[Step]:
    """The steps whose output no later step reads: what the answer shows."""
    used = {s.over for s in steps if s.call is not None} | {s.filter for s in steps}
    return [s for s in steps if s.number not in used]
