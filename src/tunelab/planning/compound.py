"""Compound requests end to end, shared by ``tunelab route``, ``tunelab chat`` and POST /v1/plan:
tell a compound request from a single one, plan it, check it, run it with a trace, summarise.

A request is compound when it lists several texts or asks for two functions (by the rule
planner's words); everything else takes the router's path
unchanged, so a single-function request costs what it cost before planning existed.
"""

from __future__ import annotations

import re
from typing import Any

from tunelab.planning.planner import Planned, plan_request
from tunelab.planning.program import MAX_STEPS, execute
from tunelab.planning.requests import split_request
from tunelab.planning.respond import describe_plan, summarise

_CJK = re.compile(r"[\u4e00-\u9fff]")


def looks_compound(request: str) -> bool:
    """Several texts, or several calls named for one (cheap rules, no model)."""
    from tunelab.planning.rules import ROUTER_ONLY, rule_plan

    instruction, items = split_request(request)
    if len(items) >= 2:
        return True
    if ROUTER_ONLY.search(instruction):
        return False
    plan = rule_plan(instruction)  # one text: compound when it asks for two calls
    return plan is not None and sum("call" in s for s in plan) >= 2


def language(text: str) -> str:
    return "zh" if len(_CJK.findall(text)) > 0.2 * max(1, len(text.strip())) else "en"


def run_request(
    request: str,
    execute_plan: bool = True,
    use_rules: bool = False,
    max_steps: int = MAX_STEPS,
    max_texts: int | None = None,
    planner=None,
) -> dict[str, Any]:
    """Plan ``request`` and (unless ``execute_plan`` is False) run the plan.

    Returns:
        the plan record (request, instruction, input, plan, planner, seconds), ``steps`` (the
        plan in words), and when run: ``trace`` (per step its inputs, outputs and seconds) and
        ``summary``; ``refused`` with a reason when no function serves the request.
    Raises:
        PlanError when the plan breaks a limit (texts over ``max_texts``).
    """
    p: Planned = plan_request(request, planner, use_rules, max_steps)
    out = p.to_dict()
    from tunelab.planning.rules import ROUTER_ONLY

    if ROUTER_ONLY.search(p.instruction) and len(p.items) < 2:
        out["plan"] = None
        out["refused"] = (
            "a request for music is not a plan over texts: the router serves it "
            "(tunelab route, tunelab chat, POST /v1/functions/compose_music)"
        )
        return out
    if p.plan is None:
        out["refused"] = "no registered function serves this request"
        return out
    out["steps"] = describe_plan(p.steps)
    if not execute_plan:
        return out
    run = execute(p.steps, p.items, max_texts)
    out["trace"] = run.trace
    out["summary"] = summarise(run, language(p.instruction))
    return out
