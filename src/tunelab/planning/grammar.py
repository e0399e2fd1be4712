"""The grammar of a plan line, for decoding that can only write valid plans.

A plan line is ``none`` or steps joined by ``" ; "`` (see :func:`plan_data.linearise`). Given
the steps written so far, :meth:`Grammar.options` lists every step that may come next: a call
of each registered function over the input or an earlier step, a filter on an earlier call's
result fields with the values that make sense for them (the known labels, the numbers the
request names, ``true``/``false``, entity types); :meth:`Grammar.openings` starts the calls
that ask a question (``answer``), whose question is copied from the request. The decoder keeps
only tokens that leave the line a prefix of some valid plan (:meth:`state`).
"""

from __future__ import annotations

import re

from tunelab.planning.program import MAX_STEPS, NUMERIC_OPS, item_parameter, result_fields

SEP = " ; "
_CLAUSE_END = set(',，。.;；:：!！?？、\n"“”「」')
ENTITY_TYPES = ("ORG", "PER", "LOC", "MISC")
FILTERABLE = ("label", "score", "value", "count", "types", "handoff")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])-?\d+(?:\.\d+)?")
# a Chinese numeral before a unit of rating ("五星", "三分", "两颗星"): its number
_ZH_NUMBER = re.compile(r"(十|[一二两三四五六七八九]十?)(?=[星分颗个])")
_ZH_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"两": 2}
_EN_WORDS = "zero one two three four five six seven eight nine ten".split()
_EN_NUMBER = re.compile(r"(?i)\b(" + "|".join(_EN_WORDS) + r")\b")


def zh_number(word: str) -> int:
    """A Chinese numeral as a number: 一 .. 九, 十, and tens such as 三十."""
    if word == "十":
        return 10
    value = _ZH_DIGITS[word[0]]
    return value * 10 if word.endswith("十") else value


class Grammar:
    """Valid plan lines for one request over ``functions`` (registered names)."""

    def __init__(
        self,
        functions: list[str],
        instruction: str,
        labels: dict[str, list[str]],
        max_steps: int = MAX_STEPS,
    ) -> None:
        self.functions = functions
        self.labels = labels
        self.max_steps = max_steps
        numbers = {m.group() for m in _NUMBER.finditer(instruction)}
        numbers |= {str(zh_number(m.group(1))) for m in _ZH_NUMBER.finditer(instruction)}
        words = _EN_NUMBER.finditer(instruction)
        numbers |= {str(_EN_WORDS.index(m.group(1).lower())) for m in words}
        self.numbers = sorted(numbers | {"0"}, key=lambda s: (len(s), s))
        self.instruction = instruction
        # functions whose text parameter is a context: they are asked a question
        self._asking = [fn for fn in functions if item_parameter(fn) == "context"]
        self._fields = {f: sorted(result_fields(f) & set(FILTERABLE)) for f in functions}
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}

    def options(self, done: tuple[str, ...]) -> tuple[str, ...]:
        """Every step that may follow the steps ``done`` (as written)."""
        hit = self._cache.get(done)
        if hit is not None:
            return hit
        n = len(done) + 1
        out: list[str] = ["none"] if not done else []
        if n <= self.max_steps:
            sources = ["input", *map(str, range(1, n))]
            out += [f"{fn} {src}" for fn in self.functions if fn not in self._asking
                    for src in sources]  # fmt: skip
            for k, step in enumerate(done, start=1):
                fn = step.split(" ", 1)[0]
                if fn in ("filter", "none"):
                    continue
                for fld in self._fields.get(fn, []):
                    out += [f"filter {k} {fld} {op} {v}" for op, v in self._conditions(fn, fld)]
        self._cache[done] = result = tuple(out)
        return result

    def _conditions(self, fn: str, fld: str) -> list[tuple[str, str]]:
        if fld == "label":
            return [(op, v) for v in self.labels.get(fn, []) for op in ("==", "!=")]
        if fld == "handoff":
            return [("==", "true"), ("==", "false")]
        if fld == "types":
            return [("has", t) for t in ENTITY_TYPES]
        if fld == "count":
            return [(">", "0"), ("==", "0")]
        return [(op, v) for v in self.numbers for op in (*NUMERIC_OPS, "==")]

    def openings(self, done: tuple[str, ...]) -> list[str]:
        """Starts of the steps whose question is copied from the instruction
        (``answer 2 question="``): any stretch of the instruction may follow, then ``"``."""
        n = len(done) + 1
        if n > self.max_steps:
            return []
        sources = ["input", *map(str, range(1, n))]
        return [f'{fn} {src} question="' for fn in self._asking for src in sources]

    def _question(self, q: str) -> bool:
        """Whether ``q`` is a question copied from the instruction: a stretch of it that ends
        with a question mark or where a clause ends (before punctuation, or at the end)."""
        if not q.strip() or q != q.strip():
            return False
        start = self.instruction.find(q)
        while start >= 0:
            end = start + len(q)
            if q[-1] in "?？" or end == len(self.instruction):
                return True
            if self.instruction[end] in _CLAUSE_END:
                return True
            start = self.instruction.find(q, start + 1)
        return False

    def _step(self, done: tuple[str, ...], part: str) -> str:
        """How ``part`` stands as the next step after ``done``: complete, prefix or invalid."""
        opts = self.options(done)
        if part in opts:
            return "complete"
        for head in self.openings(done):
            if part.startswith(head):
                copied = part[len(head) :]
                if copied.endswith('"') and self._question(copied[:-1]):
                    return "complete"
                return "prefix" if '"' not in copied and copied in self.instruction else "invalid"
            if head.startswith(part):
                return "prefix"
        return "prefix" if any(o.startswith(part) for o in opts) else "invalid"

    def state(self, text: str) -> str:
        """'complete' (a whole plan), 'prefix' (can still become one) or 'invalid'."""
        parts = text.split(SEP)
        done: list[str] = []
        for part in parts[:-1]:
            if part == "none" or self._step(tuple(done), part) != "complete":
                return "invalid"
            done.append(part)
        last = parts[-1]
        if len(parts) > self.max_steps:
            return "invalid"
        now = self._step(tuple(done), last)
        if now != "invalid":
            return now
        # a whole step and part of the separator (" ", " ;")
        for cut in (1, 2):
            head, tail = last[:-cut], last[-cut:]
            if tail == SEP[:cut] and head != "none" and self._step(tuple(done), head) == "complete":
                return "prefix" if len(parts) < self.max_steps else "invalid"
        return "invalid"


class TokenText:
    """The text each token adds after another (SentencePiece's word-start marks included),
    worked out on first use: the decoder only asks about its top candidates."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ref = tokenizer("a", add_special_tokens=False)["input_ids"][-1]
        self.base = tokenizer.decode([self.ref])
        self._cache: dict[int, str] = {}

    def __getitem__(self, tid: int) -> str:
        hit = self._cache.get(tid)
        if hit is None:
            s = self.tokenizer.decode([self.ref, tid])
            hit = s[len(self.base) :] if s.startswith(self.base) else ""
            self._cache[tid] = hit = "" if "\ufffd" in hit else hit
        return hit
