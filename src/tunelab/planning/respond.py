"""What a user reads after a plan ran: the plan in words, then what the last steps found.

One line per step that no later step reads ("the answer"), in the request's language, built from
the results themselves (label counts, score range, entities found, texts written), so nothing
is claimed that the trace does not hold.
"""

from __future__ import annotations

from collections import Counter

from tunelab.planning.program import Execution, Step, terminal_steps, view

WORDS = {
    "en": {"kept": "{k} of {n} kept ({cond})", "none": "nothing", "on": "{fn} on {n} text(s)"},
    "zh": {"kept": "{n} 条中保留 {k} 条（{cond}）", "none": "无", "on": "{fn}：{n} 条"},
}


def describe_plan(steps: list[Step]) -> list[str]:
    """Each step as a short line: ``1. analyze_sentiment over the input``."""
    out = []
    for s in steps:
        if s.call is not None:
            src = "the input" if s.over == "input" else f"step {s.over}"
            args = "".join(f', {k}="{v}"' for k, v in s.args.items())
            out.append(f"{s.number}. {s.call} over {src}{args}")
        else:
            fld, op, value = s.where or ("", "", "")
            out.append(f"{s.number}. keep the items of step {s.filter} where {fld} {op} {value}")
    return out


def summarise(run: Execution, lang: str = "en") -> str:
    """The answer: what each terminal step found, item by item."""
    w = WORDS.get(lang, WORDS["en"])
    lines: list[str] = []
    for s in terminal_steps(run.steps):
        items, results = run.items.get(s.number, []), run.results.get(s.number, [])
        if s.call is None:
            n = len(run.items.get(s.filter or 0, []))
            cond = " ".join(map(str, s.where or ()))
            lines.append(w["kept"].format(k=len(items), n=n, cond=cond))
            lines += [f"  - {i}" for i in items]
            continue
        lines.append(w["on"].format(fn=s.call, n=len(items)) + (":" if items else f": {w['none']}"))
        views = [view(r) for r in results]
        for item, v in zip(items, views, strict=True):
            lines.append(f"  - {_short(item)} -> {_result(v)}")
        labels = Counter(v["label"] for v in views if "label" in v)
        if len(labels) > 1:
            lines.append("  " + ", ".join(f"{k}: {c}" for k, c in labels.most_common()))
    return "\n".join(lines)


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _result(v: dict) -> str:
    if "label" in v:
        return f"{v['label']} ({v.get('score', 0):.2f})"
    if "entities" in v:
        found = [f"{e.get('text')} ({e.get('type')})" for e in v["entities"]]
        return ", ".join(found) or "-"
    if "handoff" in v:
        return "handed off to a person" if v["handoff"] else str(v.get("answer"))
    if "value" in v:
        x = v["value"]
        return f"{x:.2f}" if isinstance(x, float) else str(x)
    return _short(str(v.get("text", v)), 120)
