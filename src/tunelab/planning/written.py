"""Hand-written training requests for the planner (``plan_requests/*.jsonl``).

The composed requests (:mod:`plan_data`) teach the plan language; these teach how people
phrase compound requests: written by hand in English and Chinese, in the line format of the
held-out test set (``data/plans/README.md``), and never derived from it. A request whose plan
calls a function that is not registered now is left out, so the planner trains on what it
can run.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunelab.planning.plan_data import linearise
from tunelab.planning.requests import split_request

WRITTEN = Path(__file__).with_name("plan_requests")


def written_rows(functions: list[str], folder: Path = WRITTEN) -> list[dict]:
    """The written requests (all ``*.jsonl`` in ``folder``) whose plans call only
    ``functions``, as training examples: request, lang, shape, input, plan, prompt, response."""
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            plan = r["plan"]
            if plan and any("call" in s and s["call"] not in functions for s in plan):
                continue
            out.append(
                {
                    "request": r["request"],
                    "lang": r["lang"],
                    "shape": f"written_{r['kind']}",
                    "input": r["input"],
                    "plan": plan,
                    "prompt": split_request(r["request"])[0],
                    "response": linearise(plan),
                }
            )
    return out


def mix(
    composed: list[dict], written: list[dict], copies: int, n_val: int, seed: int
) -> tuple[list[dict], list[dict]]:
    """Training and validation rows: ``n_val`` of each kind held out for validation, the
    rest of the written requests repeated ``copies`` times among the composed ones."""
    rng = random.Random(seed)
    written = written[:]
    rng.shuffle(written)
    k = min(n_val, len(written) // 5)
    validation = composed[:n_val] + written[:k]
    train = composed[n_val:] + written[k:] * max(0, copies)
    rng.shuffle(train)
    return train, validation
