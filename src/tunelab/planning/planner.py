"""The planner: a compound request -> a validated plan of function calls.

    >>> from tunelab.planning.planner import plan_request
    >>> p = plan_request("Find the complaints and list the companies they mention:\\n"
    ...                  "1. Delta lost my bag\\n2. Lovely stay at the Hilton")
    >>> p.source, p.plan
    ('model', [{'call': 'analyze_sentiment', 'over': 'input'},
               {'filter': 1, 'where': ['label', '==', 'negative']},
               {'call': 'extract_entities', 'over': 2}])

The planner model is an ordinary tunelab generation run (Gemma 3 270M + LoRA by default,
``tunelab planner-train``) registered as ``planner``: it reads the request's instruction (the
texts taken out, :mod:`tunelab.planning.requests`) and writes the plan as one line. Decoding is
constrained by :class:`~tunelab.planning.grammar.Grammar`: at each token the most likely token
that keeps the line a prefix of a valid plan is taken, so what it writes always parses and
passes :func:`~tunelab.planning.program.parse`. Without a registered planner, the rule-based
planner (:mod:`tunelab.planning.rules`) answers, and says so (``source``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tunelab.planning.grammar import Grammar, TokenText
from tunelab.planning.plan_data import delinearise, phrases
from tunelab.planning.program import MAX_STEPS, Step, parse
from tunelab.planning.requests import split_request

PLANNER = "planner"  # its registry name
MAX_PLAN_TOKENS = 96
TOP_K = 64  # candidates checked against the grammar before a full scan


@dataclass
class Planned:
    request: str
    instruction: str
    items: list[str]
    plan: list[dict] | None  # None: refused (no function serves it)
    source: str  # "model" or "rules"
    seconds: float = 0.0
    line: str = ""
    steps: list[Step] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "instruction": self.instruction,
            "input": self.items,
            "plan": self.plan,
            "planner": self.source,
            "seconds": round(self.seconds, 4),
        }


def default_labels(functions: list[str]) -> dict[str, list[str]]:
    """The labels a filter may test per function: the registered model's own labels when
    there is one, else the labels the planner was trained with."""
    from tunelab.functions.registry import read_registry

    out: dict[str, list[str]] = {}
    registered = read_registry()
    for fn, fallback in (
        ("analyze_sentiment", ["negative", "positive"]),
        ("classify", sorted(phrases()["class_labels"])),
    ):
        if fn not in functions:
            continue
        labels = fallback
        if fn in registered:
            try:
                from tunelab.runs import read_run

                labels = list(read_run(registered[fn]).labels) or fallback
            except Exception:  # not a run folder readable here: the planner's labels
                pass
        out[fn] = labels
    return out


class ModelPlanner:
    """A loaded planner run and its constrained decoder."""

    def __init__(self, tuned) -> None:
        from tunelab.functions.catalog import text_functions

        self.tuned = tuned
        self.model, self.tokenizer = tuned.model, tuned.tokenizer
        self.texts = TokenText(self.tokenizer)
        self.functions = [f.name for f in text_functions()]
        eos = self.tokenizer.eos_token_id
        self.eos = {eos} if isinstance(eos, int) else set()

    def write(self, instruction: str, max_steps: int = MAX_STEPS) -> str:
        """The plan line for ``instruction``, decoded greedily under the grammar.

        Two choices are made on probabilities rather than one token's: the request is refused
        only when "none" holds at least half of the first token's probability among what the
        grammar allows (a plan's probability is spread over several first steps), and of the
        points along the greedy line where the plan is complete, the one whose whole line
        (ending there) is likeliest is kept, so a likely plan is not run on into extra steps.
        """
        import torch
        from transformers import DynamicCache

        from tunelab.tasks.generation import _cache_argument, prompt_ids

        if not instruction.strip():
            return "none"  # nothing asked
        grammar = Grammar(self.functions, instruction, default_labels(self.functions), max_steps)
        ids = torch.tensor([prompt_ids(self.tokenizer, instruction, 256)], dtype=torch.long)
        cache = DynamicCache(config=self.model.config)
        kw = {_cache_argument(self.model): cache}
        text, total = "", 0.0
        ends: list[tuple[float, str]] = []  # (log-probability of the line ending here, line)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, **kw, use_cache=True, logits_to_keep=1).logits
            for _ in range(MAX_PLAN_TOKENS):
                logp = torch.log_softmax(logits[0, -1].float(), dim=-1)
                complete = grammar.state(text) == "complete"
                if complete:
                    ends.append(
                        (total + max((float(logp[e]) for e in self.eos), default=0.0), text)
                    )
                if not text and self._refuses(logp, grammar):
                    return "none"
                chosen = self._next(logp, text, grammar, complete, allow_none=False)
                if chosen is None or chosen in self.eos:
                    break
                total += float(logp[chosen])
                text += self._piece(chosen, text)
                logits = self.model(input_ids=torch.tensor([[chosen]]), **kw, use_cache=True).logits
        if grammar.state(text) == "complete" and all(t != text for _, t in ends):
            ends.append((total, text))  # ran out of tokens: the line as written
        return max(ends)[1] if ends else "none"

    def _refuses(self, logp, grammar: Grammar) -> bool:
        """Whether "none" holds at least half of the probability of the first tokens the
        grammar allows (among the likeliest ``TOP_K``)."""
        refuse = plan = 0.0
        for tid in logp.topk(min(TOP_K, logp.numel())).indices.tolist():
            piece = self._piece(tid, "")
            if not piece or tid in self.eos or grammar.state(piece) == "invalid":
                continue
            p = float(logp[tid].exp())
            if "none".startswith(piece):
                refuse += p
            else:
                plan += p
        return refuse >= plan and refuse > 0

    def _next(
        self, logits, text: str, grammar: Grammar, complete: bool, allow_none: bool = True
    ) -> int | None:
        """The most likely token the grammar allows after ``text`` (None: nothing can follow);
        ``complete``: ``text`` is a whole plan (the end may come next); ``allow_none=False``:
        not the start of a refusal."""
        for order in (
            logits.topk(min(TOP_K, logits.numel())).indices,
            logits.argsort(descending=True),
        ):
            for tid in order.tolist():
                if tid in self.eos:
                    if complete:
                        return tid
                    continue
                piece = self._piece(tid, text)
                if not piece or (not allow_none and not text and "none".startswith(piece)):
                    continue
                if grammar.state(text + piece) != "invalid":
                    return tid
        return None

    def _piece(self, tid: int, text: str) -> str:
        """What token ``tid`` adds to ``text`` (the line starts without a space)."""
        piece = self.texts[tid]
        return piece.lstrip() if not text else piece


_planner_cache: dict[str, ModelPlanner] = {}


def model_planner(folder: str | None = None) -> ModelPlanner | None:
    """The planner run at ``folder``, else the one registered as ``planner``; None when
    neither exists (the rules then plan)."""
    import tunelab
    from tunelab.functions.registry import read_registry

    path = folder or read_registry().get(PLANNER)
    if path is None:
        return None
    hit = _planner_cache.get(path)
    if hit is None:
        tuned = tunelab.load(path)
        if tuned.task_name != "generation":
            from tunelab.errors import TunelabError

            raise TunelabError(f"{path}: not a planner (a {tuned.task_name} run)")
        hit = _planner_cache[path] = ModelPlanner(tuned)
    return hit


def plan_request(
    request: str,
    planner: ModelPlanner | None = None,
    use_rules: bool = False,
    max_steps: int = MAX_STEPS,
) -> Planned:
    """Plan ``request``: the planner model when one is given or registered, else the rules."""
    from tunelab.planning.rules import rule_plan

    started = time.perf_counter()
    instruction, items = split_request(request)
    if not use_rules and planner is None:
        planner = model_planner()
    if planner is not None and not use_rules:
        line = planner.write(instruction, max_steps)
        plan, source = delinearise(line), "model"
    else:
        labels = {en: [en, *zh] for en, zh in phrases()["class_labels"].items()}
        plan, source = rule_plan(instruction, labels), "rules"
        line = ""
        if plan is not None and len(plan) > max_steps:
            plan = plan[:max_steps]
    steps = parse(plan, max_steps) if plan else []
    return Planned(
        request, instruction, items, plan, source, time.perf_counter() - started, line, steps
    )
