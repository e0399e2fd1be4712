"""What a data file holds, and which task it is.

    >>> profile = inspect_file("data/en_sentiment/train.csv")
    >>> profile.task, profile.shape, profile.language, profile.labels
    ('text-classification', 'single', 'en', {'negative': 4059, 'positive': 3995})

The file is read with the same readers training uses (CSV, TSV, JSONL, CoNLL), so a file the
planner accepts is one ``tunelab train`` reads. The task follows from the columns (tokens and
tags; question, context and answers; prompt and response or chat messages; text and
text_pair) and from the target's values (a list or ``a;b`` per row: multi-label; numbers with
many values or fractions: regression; long free texts: generation; else single-label
classification); a goal sentence may settle what the values leave open (``--goal "predict the
star rating"`` makes integer stars a regression, and may name the target column).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.errors import DataError

# shape of the target -> task
SHAPES = {
    "single": "text-classification",
    "multi": "multi-label",
    "number": "regression",
    "tags": "token-classification",
    "spans": "question-answering",
    "response": "generation",
    "pairs": "sentence-embedding",
}
# a column with one of these names is the target (in this order), unless the goal names another
TARGET_NAMES = (
    "label", "labels", "target", "class", "category", "intent", "topic", "sentiment",
    "tags", "y", "rating", "score", "stars", "response", "answer", "summary", "output",
)  # fmt: skip
TEXT_NAMES = ("text", "sentence", "review", "content", "body", "message", "input", "comment")
# words in a goal that point to a target shape (English and Chinese)
GOAL_WORDS: dict[str, tuple[str, ...]] = {
    "number": (
        "score", "rating", "rate ", "stars", "number", "how much", "how many", "regress",
        "predict the value", "评分", "打分", "分数", "星级", "回归", "数值",
    ),
    "multi": ("multi-label", "multiple labels", "several labels", "all labels", "多标签"),
    "single": ("classify", "classification", "sentiment", "category", "分类", "情感", "类别"),
    "response": (
        "generate", "write", "reply", "summar", "rewrite", "translate", "生成", "回复", "摘要",
        "改写", "翻译",
    ),
}  # fmt: skip
MULTI_SEPARATORS = (";", "|")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LETTER = re.compile(r"[A-Za-z\u00c0-\u024f\u0400-\u04ff\u3400-\u9fff\uf900-\ufaff]")
SAMPLE = 2000  # rows whose texts are measured for language and length


@dataclass
class Profile:
    """What the planner learnt from a file (``reasons`` say why, one line per decision)."""

    path: str
    format: str
    rows: int
    columns: list[str]
    task: str
    shape: str
    text_column: str
    target_column: str
    language: str
    cjk_share: float
    labels: dict[str, int] = field(default_factory=dict)  # single/multi/tags: counts
    numbers: dict[str, float] = field(default_factory=dict)  # regression: min, max, distinct
    text_chars: dict[str, int] = field(default_factory=dict)  # p50, p95, max
    texts: list[str] = field(default_factory=list)  # a sample, for token lengths
    reasons: list[str] = field(default_factory=list)

    @property
    def imbalance(self) -> float | None:
        """Largest class count over the smallest (single-label and multi-label)."""
        if self.shape not in ("single", "multi") or not self.labels:
            return None
        counts = list(self.labels.values())
        return max(counts) / max(1, min(counts))

    @property
    def smallest_class(self) -> int | None:
        return min(self.labels.values()) if self.shape == "single" and self.labels else None

    def summary(self) -> dict[str, Any]:
        out = {
            k: getattr(self, k)
            for k in ("path", "format", "rows", "task", "shape", "text_column", "target_column")
        }
        out.update(language=self.language, text_chars=self.text_chars)
        if self.labels:
            out["labels"] = dict(sorted(self.labels.items(), key=lambda kv: -kv[1])[:20])
            out["classes"] = len(self.labels)
        if self.numbers:
            out["numbers"] = self.numbers
        return out


def inspect_file(path: str, goal: str | None = None, target: str | None = None) -> Profile:
    """Read ``path`` and work out its task, target, language and shape.

    Args:
        path: a .csv, .tsv, .jsonl, SQuAD .json or CoNLL file.
        goal: what the user wants, in words; may name the target column or its shape.
        target: the target column, when the user names it (overrides the guess).
    Raises:
        DataError when the file cannot be read or has no usable target.
    """
    fmt, rows = read_any(path)
    columns = list(dict.fromkeys(k for r in rows[:200] for k in r))
    goal_l = (goal or "").lower()
    p = _structured(path, fmt, rows, columns)
    if p is None:
        p = _text_and_target(path, fmt, rows, columns, goal_l, target)
    _describe_texts(p, rows)
    return p


def read_any(path: str) -> tuple[str, list[dict]]:
    """(format, rows as dicts) of any file training reads: CSV, TSV, JSONL, CoNLL, SQuAD."""
    from tunelab.data.readers import file_format, read_rows
    from tunelab.tasks.token_classification import CONLL

    suffix = Path(path).suffix.lower()
    if suffix in CONLL:
        from tunelab.tasks.token_classification import _read_conll

        return "conll", [r.values for r in _read_conll(path)]
    if suffix == ".json":
        from tunelab.tasks.question_answering import _squad_json

        return "squad-json", [r.values for r in _squad_json(path)]
    return file_format(path), [r.values for r in read_rows(path)]


def _structured(path: str, fmt: str, rows: list[dict], columns: list[str]) -> Profile | None:
    """Files whose columns say the task: tokens+tags, question+context, prompt+response or
    chat messages, text+text_pair."""
    cols = set(columns)

    def make(shape: str, text: str, target: str, why: str) -> Profile:
        return Profile(
            path, fmt, len(rows), columns, SHAPES[shape], shape, text, target, "", 0.0,
            reasons=[why],
        )  # fmt: skip

    if {"tokens", "tags"} <= cols:
        p = make("tags", "tokens", "tags", "rows hold a word list and one tag per word")
        p.labels = dict(Counter(_tag_type(t) for r in rows for t in r.get("tags") or []))
        return p
    if {"question", "context"} <= cols:
        return make(
            "spans", "question", "answers", "rows hold a question, a context and answer spans"
        )
    if "messages" in cols or {"prompt", "response"} <= cols:
        text = "messages" if "messages" in cols and "prompt" not in cols else "prompt"
        return make("response", text, "response", "rows hold a prompt and the text to write")
    if {"text", "text_pair"} <= cols and not cols & {"label", "labels"}:
        return make("pairs", "text", "text_pair", "rows hold pairs of texts that mean the same")
    return None


def _tag_type(tag: Any) -> str:
    t = str(tag)
    return t.split("-", 1)[1] if "-" in t and t[:2] in ("B-", "I-", "E-", "S-") else t


def _text_and_target(
    path: str, fmt: str, rows: list[dict], columns: list[str], goal: str, target: str | None
) -> Profile:
    """A text column and a target column; the target's values give the shape."""
    strings = [c for c in columns if _share(rows, c, lambda v: isinstance(v, str)) > 0.9]
    text = next((c for c in TEXT_NAMES if c in columns), None)
    if text is None and strings:
        text = max(strings, key=lambda c: _mean_len(rows, c))
    if text is None:
        raise DataError(path, 1, f"no text column (found: {', '.join(columns)})")
    candidates = [c for c in columns if c != text]
    named = [c for c in candidates if re.search(rf"\b{re.escape(c.lower())}\b", goal)]
    if target is not None:
        if target not in columns:
            raise DataError(path, 1, f"no column {target!r} (found: {', '.join(columns)})")
        chosen, why = target, f"target column {target!r}, as asked"
    elif named:
        chosen, why = named[0], f"target column {named[0]!r}: the goal names it"
    else:
        by_name = [c for c in TARGET_NAMES if c in candidates]
        if by_name:
            chosen, why = by_name[0], f"target column {by_name[0]!r}: by its name"
        elif candidates:
            chosen = min(candidates, key=lambda c: len({json.dumps(r.get(c)) for r in rows}))
            why = f"target column {chosen!r}: the column with the fewest distinct values"
        else:
            raise DataError(
                path,
                1,
                f"no usable target: the only column is {text!r}; add a column with the label, "
                "number, tags or response to learn",
            )
    values = [r.get(chosen) for r in rows if r.get(chosen) not in (None, "")]
    if not values:
        raise DataError(path, 2, "no usable target: every value is empty", field=chosen)
    shape, how = _shape(values, goal)
    p = Profile(
        path, fmt, len(rows), columns, SHAPES[shape], shape, text, chosen, "", 0.0,
        reasons=[f"text column {text!r}", why, how],
    )  # fmt: skip
    if shape == "single":
        p.labels = dict(Counter(str(v).strip() for v in values))
    elif shape == "multi":
        p.labels = dict(Counter(x for v in values for x in _items(v)))
    elif shape == "number":
        nums = [x for x in map(_number, values) if x is not None]
        p.numbers = {"min": min(nums), "max": max(nums), "distinct": len(set(nums))}
    return p


def _shape(values: list[Any], goal: str) -> tuple[str, str]:
    """The target's shape and why."""
    wants = {s for s, words in GOAL_WORDS.items() if any(w in goal for w in words)}
    n = len(values)
    listed = sum(isinstance(v, list) for v in values)
    split = sum(isinstance(v, str) and any(s in v for s in MULTI_SEPARATORS) for v in values)
    if listed > 0.5 * n or (split >= max(2, 0.05 * n) and _short_items(values)):
        return "multi", "multi-label: rows hold several labels (a list or 'a;b')"
    nums = [_number(v) for v in values]
    if all(x is not None for x in nums):
        distinct = len(set(nums))
        fractional = any(x != int(x) for x in nums if x is not None)
        if "number" in wants:
            return "number", "regression: the target is a number, and the goal asks for one"
        if fractional or distinct > 20:
            return "number", f"regression: the target is a number ({distinct} distinct values)"
        return "single", (
            f"classification: {distinct} whole-number values, taken as classes "
            "(a goal such as 'predict the rating' makes it a regression)"
        )
    distinct = len({str(v) for v in values})
    mean_len = sum(len(str(v)) for v in values) / n
    if "response" in wants or (distinct > 0.5 * n and mean_len > 30):
        return "response", "generation: the target is free text (a response to write)"
    return "single", f"single-label classification: {distinct} classes"


def _items(v: Any) -> list[str]:
    if isinstance(v, list):
        return [str(x).strip() for x in v]
    s = str(v)
    if s.startswith("["):
        try:
            return [str(x).strip() for x in json.loads(s)]
        except ValueError:
            pass
    for sep in MULTI_SEPARATORS:
        if sep in s:
            return [x.strip() for x in s.split(sep) if x.strip()]
    return [s.strip()]


def _short_items(values: list[Any]) -> bool:
    """Whether separated values look like label lists (a small vocabulary of short items)."""
    items = [x for v in values for x in _items(v)]
    return (
        bool(items) and len(set(items)) <= max(50, len(values) // 10) and max(map(len, items)) < 40
    )


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def _share(rows: list[dict], column: str, test) -> float:
    return sum(1 for r in rows if test(r.get(column))) / max(1, len(rows))


def _mean_len(rows: list[dict], column: str) -> float:
    return sum(len(str(r.get(column) or "")) for r in rows) / max(1, len(rows))


def text_of(row: dict, p: Profile) -> str:
    """The text a row gives the model (words joined, question with context, chat turns)."""
    v = row.get(p.text_column)
    if p.shape == "tags":
        sep = "" if p.language == "zh" else " "
        return sep.join(str(t) for t in (v or []))
    if p.shape == "spans":
        return f"{v} {row.get('context', '')}"
    if isinstance(v, list):  # chat messages
        return " ".join(str(m.get("content", "")) for m in v if isinstance(m, dict))
    if p.shape == "response":
        return f"{v} {row.get(p.target_column, '')}"
    return str(v or "")


def _describe_texts(p: Profile, rows: list[dict]) -> None:
    """Language, text lengths and a sample of texts (every row when there are few)."""
    step = max(1, len(rows) // SAMPLE)
    sample = rows[::step][:SAMPLE]
    raw = [text_of(r, p) if p.shape != "tags" else "".join(map(str, r.get("tokens") or []))
           for r in sample]  # fmt: skip
    letters = sum(len(LETTER.findall(t)) for t in raw)
    p.cjk_share = round(sum(len(CJK.findall(t)) for t in raw) / max(1, letters), 3)
    p.language = "zh" if p.cjk_share > 0.3 else "en"
    p.texts = [text_of(r, p) for r in sample]
    lengths = sorted(len(t) for t in p.texts)
    p.text_chars = {
        "p50": lengths[len(lengths) // 2],
        "p95": lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))],
        "max": lengths[-1],
    }
    p.reasons.append(
        f"language {p.language}: {p.cjk_share:.0%} of the letters are Chinese characters"
    )
