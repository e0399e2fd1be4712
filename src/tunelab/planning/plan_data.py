"""Training requests for the planner, composed from phrase banks over the registered functions.

Each example is a request (an instruction and the texts it is about, in one of the list formats
users type), the instruction the pipeline reads from it (:func:`split_request`), and the plan
written as one line the planner model learns to produce (:func:`linearise`):

    analyze_sentiment input ; filter 1 label == negative ; extract_entities 2

Shapes: one call; a call, a filter on its result and a call over what was kept (the producer
named or only implied: "find the complaints" is a sentiment call); two calls over the same
texts; chains of three to five steps with one or two filters; requests no function serves
("none"). English and Chinese. The phrases are in ``plan_phrases.yaml``; a function without
phrases there is phrased with the instructions of its own example requests.
"""

from __future__ import annotations

import csv
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tunelab.planning.requests import split_request

PHRASES = Path(__file__).with_name("plan_phrases.yaml")
# a filter condition: (phrase key in 'keep', the function whose result it tests, field, op)
CONDITIONS = [
    ("label_negative", "analyze_sentiment", "label", "==", "negative"),
    ("label_positive", "analyze_sentiment", "label", "==", "positive"),
    ("value_lt", "score", "value", "<", None),
    ("value_le", "score", "value", "<=", None),
    ("value_gt", "score", "value", ">", None),
    ("value_ge", "score", "value", ">=", None),
    ("value_eq", "score", "value", "==", None),
    ("handoff_true", "answer_faq", "handoff", "==", True),
    ("handoff_false", "answer_faq", "handoff", "==", False),
    ("types_ORG", "extract_entities", "types", "has", "ORG"),
    ("types_PER", "extract_entities", "types", "has", "PER"),
    ("types_LOC", "extract_entities", "types", "has", "LOC"),
    ("count_gt0", "extract_entities", "count", ">", 0),
    ("count_eq0", "extract_entities", "count", "==", 0),
    ("label_class", "classify", "label", "==", None),
    ("label_not_class", "classify", "label", "!=", None),
]
SHAPES = (
    ("single", 14), ("filter_then", 26), ("filter_then_implied", 14), ("filter_only", 6),
    ("parallel", 10),
    ("filter_two_calls", 8), ("two_filters", 8), ("parallel_filter", 8), ("refuse", 12),
)  # fmt: skip


@lru_cache(maxsize=1)
def phrases() -> dict:
    return yaml.safe_load(PHRASES.read_text(encoding="utf-8"))


def linearise(plan: list[dict] | None) -> str:
    """A plan as the one line the planner model writes ("none" for no plan)."""
    if not plan:
        return "none"
    out = []
    for s in plan:
        if "call" in s:
            text = f"{s['call']} {s.get('over', 'input')}"
            for k, v in (s.get("args") or {}).items():
                text += f' {k}="{v}"'
            out.append(text)
        else:
            fld, op, value = s["where"]
            out.append(f"filter {s['filter']} {fld} {op} {_value(value)}")
    return " ; ".join(out)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    return str(v)


_ARG = re.compile(r'\s(\w+)="([^"]*)"')


def delinearise(text: str) -> list[dict] | None:
    """The plan a line written by :func:`linearise` describes (None for "none")."""
    text = text.strip()
    if not text or text == "none":
        return None
    plan: list[dict] = []
    for part in text.split(" ; "):
        words = part.split()
        if words and words[0] == "filter" and len(words) >= 5:
            value: Any = " ".join(words[4:])
            plan.append({"filter": _int(words[1]), "where": [words[2], words[3], _parse(value)]})
            continue
        args = dict(_ARG.findall(part))
        head = _ARG.sub("", part).split()
        if len(head) < 2:
            raise ValueError(f"not a step: {part!r}")
        step: dict = {"call": head[0], "over": "input" if head[1] == "input" else _int(head[1])}
        if args:
            step["args"] = args
        plan.append(step)
    return plan


def _int(s: str) -> int | str:
    return int(s) if s.isdigit() else s


def _parse(v: str) -> Any:
    if v in ("true", "false"):
        return v == "true"
    try:
        x = float(v)
    except ValueError:
        return v
    return int(x) if x == int(x) and "." not in v else x


# --- composing requests ----------------------------------------------------------------------
class Composer:
    """Draws requests for the functions in ``functions`` (names), English and Chinese."""

    def __init__(self, functions: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.functions = functions
        self.p = phrases()
        self.items = _item_pool()
        self.fragments = _fragments(functions)
        self.conditions = [c for c in CONDITIONS if c[1] in functions]

    def do(self, fn: str, lang: str) -> tuple[str, dict]:
        """A clause that asks for ``fn`` on each text, and the call's extra arguments."""
        bank = self.p["do"].get(fn, {}).get(lang) or self.fragments.get((fn, lang))
        if not bank:
            bank = [fn.replace("_", " ")]
        phrase = self.rng.choice(bank)
        if "{q}" in phrase:
            q = self.rng.choice(self.p["questions"][lang])
            return phrase.replace("{q}", q), {"question": q}
        return phrase, {}

    def keep(self, cond: tuple, lang: str) -> tuple[str, Any]:
        key, _, _, _, value = cond
        phrase = self.rng.choice(self.p["keep"][key][lang])
        if key.startswith("value_"):
            value = self.rng.choice([-3, -2, -1, 0, 1, 2, 3, 4, 5])
            phrase = phrase.replace("{n}", str(value))
        elif "{label}" in phrase or "{zh}" in phrase:
            value, names = self.rng.choice(sorted(self.p["class_labels"].items()))
            zh = self.rng.choice(names)
            phrase = phrase.replace("{label}", value).replace("{zh}", zh)
        return phrase, value

    def pick(self, lang: str, key: str) -> str:
        return self.rng.choice(self.p[key][lang])

    def example(self) -> dict:
        rng = self.rng
        lang = rng.choice(("en", "zh"))
        shape = rng.choices([s for s, _ in SHAPES], weights=[w for _, w in SHAPES])[0]
        if not self.conditions and shape not in ("single", "parallel", "refuse"):
            shape = "single"
        instruction, plan = getattr(self, f"_{shape}")(lang)
        request, items = self.request(instruction, lang, plan)
        return {
            "request": request,
            "lang": lang,
            "shape": shape,
            "input": items,
            "plan": plan,
            "prompt": split_request(request)[0],
            "response": linearise(plan),
        }

    # shapes: (instruction, plan)
    def _single(self, lang):
        fn = self.rng.choice(self.functions)
        clause, args = self.do(fn, lang)
        return clause, [_call(fn, "input", args)]

    def _refuse(self, lang):
        return self.pick(lang, "refuse"), None

    def _cond(self):
        return self.rng.choice(self.conditions)

    def _other(self, *not_these: str) -> str:
        return self.rng.choice([f for f in self.functions if f not in not_these] or self.functions)

    def _filter_then(self, lang, implied: bool = False):
        cond = self._cond()
        keep, value = self.keep(cond, lang)
        producer, consumer = cond[1], self._other(cond[1])
        do_b, args_b = self.do(consumer, lang)
        if implied:
            text = self._join(lang, self._find(lang, keep), do_b)
        else:
            do_a, _ = self.do(producer, lang)
            text = self._join(lang, do_a, self._for(lang, keep, do_b))
        plan = [_call(producer, "input"), _filter(1, cond, value), _call(consumer, 2, args_b)]
        return text, plan

    def _filter_then_implied(self, lang):
        return self._filter_then(lang, implied=True)

    def _filter_only(self, lang):
        cond = self._cond()
        keep, value = self.keep(cond, lang)
        if self.rng.random() < 0.5:
            text = self._find(lang, keep)
        else:
            do_a, _ = self.do(cond[1], lang)
            text = self._join(lang, do_a, self._find(lang, keep).lower())
        return text, [_call(cond[1], "input"), _filter(1, cond, value)]

    def _parallel(self, lang):
        a = self.rng.choice(self.functions)
        b = self._other(a)
        do_a, args_a = self.do(a, lang)
        do_b, args_b = self.do(b, lang)
        text = do_a + self.pick(lang, "both") + " " * (lang == "en") + do_b
        return text, [_call(a, "input", args_a), _call(b, "input", args_b)]

    def _filter_two_calls(self, lang):
        cond = self._cond()
        keep, value = self.keep(cond, lang)
        b = self._other(cond[1])
        c = self._other(cond[1], b)
        do_b, args_b = self.do(b, lang)
        do_c, args_c = self.do(c, lang)
        both = do_b + self.pick(lang, "both") + " " * (lang == "en") + do_c
        text = self._join(lang, self._find(lang, keep), both)
        plan = [_call(cond[1], "input"), _filter(1, cond, value), _call(b, 2, args_b),
                _call(c, 2, args_c)]  # fmt: skip
        return text, plan

    def _two_filters(self, lang):
        first = self._cond()
        second = self.rng.choice([c for c in self.conditions if c[1] != first[1]] or [first])
        keep1, v1 = self.keep(first, lang)
        keep2, v2 = self.keep(second, lang)
        c = self._other(first[1], second[1])
        do_b, _ = self.do(second[1], lang)
        do_c, args_c = self.do(c, lang)
        text = self._join(lang, self._join(lang, f"{self.pick(lang, 'find')} {keep1}", do_b),
                          self._for(lang, keep2, do_c))  # fmt: skip
        plan = [_call(first[1], "input"), _filter(1, first, v1), _call(second[1], 2),
                _filter(3, second, v2), _call(c, 4, args_c)]  # fmt: skip
        return text, plan

    def _parallel_filter(self, lang):
        cond = self._cond()
        keep, value = self.keep(cond, lang)
        other = self._other(cond[1])
        c = self._other(cond[1], other)
        do_a, _ = self.do(cond[1], lang)
        do_o, args_o = self.do(other, lang)
        do_c, args_c = self.do(c, lang)
        head = do_a + self.pick(lang, "both") + " " * (lang == "en") + do_o
        first_is_producer = self.rng.random() < 0.5
        if not first_is_producer:
            head = do_o + self.pick(lang, "both") + " " * (lang == "en") + do_a
        text = self._join(lang, head, self._for(lang, keep, do_c))
        calls = [_call(cond[1], "input"), _call(other, "input", args_o)]
        if not first_is_producer:
            calls.reverse()
        producer_step = 1 if first_is_producer else 2
        plan = [*calls, _filter(producer_step, cond, value), _call(c, 3, args_c)]
        return text, plan

    def _find(self, lang: str, keep: str) -> str:
        return f"{self.pick(lang, 'find')}{' ' if lang == 'en' else ''}{keep}"

    def _join(self, lang: str, a: str, b: str) -> str:
        return f"{a}{self.pick(lang, 'then')}{' ' if lang == 'en' else ''}{b}"

    def _for(self, lang: str, keep: str, do: str) -> str:
        if lang == "zh":
            return self.rng.choice([f"对{keep}{do}", f"{keep}{do}", f"其中{keep}{do}"])
        return self.rng.choice([f"for {keep} {do}", f"{do} for {keep}", f"for {keep}, {do}"])

    def request(self, instruction: str, lang: str, plan: list | None) -> tuple[str, list[str]]:
        """The instruction with 1-5 texts in one of the list formats users type."""
        rng = self.rng
        pool = self.items[lang]
        n = rng.choice([1, 2, 3, 3, 4, 4, 5])
        items = rng.sample(pool, min(n, len(pool)))
        polite = self.rng.choice(self.p["polite"][lang])
        if polite:
            instruction = polite + (instruction[0].lower() + instruction[1:] if lang == "en"
                                    else instruction)  # fmt: skip
        instruction = instruction[0].upper() + instruction[1:] if lang == "en" else instruction
        colon = ":" if lang == "en" else "："
        quote = ('"', '"') if lang == "en" else rng.choice([("“", "”"), ("「", "」")])
        fmt = rng.choice(("lines", "numbered", "paren", "dash", "semicolon", "quoted", "after",
                          "inline"))  # fmt: skip
        if fmt == "quoted" and '"' in instruction + "“「":
            fmt = "numbered"
        if fmt == "lines":
            body = "\n".join(items)
        elif fmt == "numbered":
            sep = rng.choice([". ", ") ", "、"])
            body = "\n".join(f"{i}{sep}{t}" for i, t in enumerate(items, 1))
        elif fmt == "paren":
            body = "\n".join(f"({i}) {t}" if lang == "en" else f"（{i}）{t}"
                             for i, t in enumerate(items, 1))  # fmt: skip
        elif fmt == "dash":
            body = "\n".join(f"- {t}" for t in items)
        elif fmt == "semicolon":
            return f"{instruction}{colon} " + ("; " if lang == "en" else "；").join(items), items
        elif fmt == "quoted":
            joined = " ".join(f"{quote[0]}{t}{quote[1]}" for t in items)
            return f"{instruction}{colon} {joined}", items
        elif fmt == "inline":
            return f"{instruction}{colon} " + " ".join(f"{i}) {t}" for i, t in
                                                      enumerate(items, 1)), items  # fmt: skip
        else:  # the texts first, the instruction after
            body = "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1))
            return f"{body}\n{instruction}", items
        return f"{instruction}{colon}\n{body}", items


def _call(fn: str, over: str | int, args: dict | None = None) -> dict:
    step: dict = {"call": fn, "over": over}
    if args:
        step["args"] = dict(args)
    return step


def _filter(step: int, cond: tuple, value: Any) -> dict:
    return {"filter": step, "where": [cond[2], cond[3], value]}


def _item_pool() -> dict[str, list[str]]:
    """Texts to list in requests: the payloads of the shipped example requests."""
    from tunelab.functions.catalog import ROUTE_DATA

    pool: dict[str, list[str]] = {"en": [], "zh": []}
    with open(ROUTE_DATA / "train.csv", encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            parts = re.split(r"[:：]", r["text"], maxsplit=1)
            text = parts[-1].strip()
            usable = r["label"] != "none" and not re.search(r'[?？"“”]', text)
            if usable and len(parts) == 2 and 8 <= len(text) <= 160 and r["lang"] in pool:
                pool[r["lang"]].append(text)
    return {k: sorted(set(v)) for k, v in pool.items()}


def _fragments(functions: list[str]) -> dict[tuple[str, str], list[str]]:
    """Instructions from each function's own example requests (the part before a colon)."""
    from tunelab.functions.router import route_rows

    out: dict[tuple[str, str], list[str]] = {}
    for r in route_rows()["train"]:
        if r["label"] in functions:
            head = re.split(r"[:：]", r["text"], maxsplit=1)[0].strip()
            if 3 <= len(head) <= 80 and head != r["text"].strip():
                out.setdefault((r["label"], r["lang"]), []).append(head)
    return out


def make_examples(n: int, seed: int, functions: list[str] | None = None) -> list[dict]:
    """``n`` distinct training requests with their plans, drawn with ``seed``."""
    from tunelab.functions.catalog import text_functions

    names = functions or [f.name for f in text_functions()]
    c = Composer(names, seed)
    out: list[dict] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n and tries < n * 20:
        tries += 1
        ex = c.example()
        if ex["request"] in seen:
            continue
        seen.add(ex["request"])
        out.append(ex)
    return out
