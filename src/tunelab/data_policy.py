"""One reading policy for every data file format: how long a field may be, what counts as a
missing value, and whether rows with one are refused (the default) or dropped.

Every reader (CSV, TSV, JSONL, TXT, CoNLL, SQuAD JSON, stdin) passes its rows through
``tunelab.data.readers.check_rows``, which applies the policy in force, so a value is judged
the same whichever file format it came in. The training, evaluation and prediction commands set
the policy from the ``max_field_chars`` and ``drop_missing`` keys (``--max-field-chars``,
``--drop-missing``); code that reads files directly gets the defaults below. It imports nothing
from tunelab, so ``config`` (which declares the keys) and ``data`` may both use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Why 1,000,000 characters: every model reads at most --max-length tokens of a text (a few
# thousand at the very most), so a million characters (about 250,000 tokens, a 300-page book)
# is already far past anything a model sees, and a longer field is nearly always a mistake: an
# unclosed quote that swallowed the rest of a CSV, or the wrong column. It also bounds the cost
# of one row: tokenising a million characters takes about a second and a few hundred MB, where
# the 10 MB text of issue 19 took 2.4 GB. Real long documents (QA contexts, whole books for
# generation) raise it with --max-field-chars.
DEFAULT_MAX_FIELD_CHARS = 1_000_000

# Written in a cell (after trimming spaces), these mean "no value", as pandas, R and SQL
# exports write it. ``none``/``None`` are deliberately absent: they are ordinary labels (a
# router's label set has ``none``).
MISSING_MARKERS = frozenset({"NaN", "nan", "NA", "N/A", "n/a", "null", "NULL"})

ABSENT = object()  # the value of a JSON key a row does not have

DROP_HINT = (
    "fill it in, or pass --drop-missing (config key drop_missing) to drop rows with missing values"
)
LENGTH_HINT = "raise it with --max-field-chars (config key max_field_chars)"


@dataclass(frozen=True)
class ReadPolicy:
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
    drop_missing: bool = False


_current = ReadPolicy()


def current_policy() -> ReadPolicy:
    """The policy the readers apply now."""
    return _current


def use_policy(policy: ReadPolicy) -> ReadPolicy:
    """Make ``policy`` the one the readers apply (process-wide); returns the previous one."""
    global _current
    previous, _current = _current, policy
    return previous


@contextmanager
def reading_policy(policy: ReadPolicy) -> Iterator[ReadPolicy]:
    """Apply ``policy`` inside the block, then restore the previous one."""
    previous = use_policy(policy)
    try:
        yield policy
    finally:
        use_policy(previous)


def is_missing(value: Any, empty: bool = True) -> bool:
    """Whether ``value`` means "no value": an absent key, JSON null, a NaN number, one of
    ``MISSING_MARKERS``, or (when ``empty``) a blank string."""
    if value is None or value is ABSENT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        s = value.strip()
        return s in MISSING_MARKERS or (empty and not s)
    return False


def shown(value: Any, limit: int = 40) -> str:
    """A short printable form of a value for a one-line error message."""
    if value is ABSENT:
        return "no value"
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def missing_message(value: Any) -> str:
    """Why a value counts as missing, and what to do about it."""
    if value is ABSENT:
        what = "missing: the row has no value for it"
    elif isinstance(value, str) and not value.strip():
        what = "is empty, a missing value"
    else:
        what = f"{shown(value)} is a missing value"
    return f"{what}; {DROP_HINT}"


def length_message(chars: int, limit: int) -> str:
    return f"{chars:,} characters, over the limit of {limit:,} characters per field; {LENGTH_HINT}"


def measure(value: Any) -> tuple[int, bool]:
    """(characters, holds a lone surrogate) of a field: a string's length; for a list (tokens,
    tags, answers) or an object, its strings' lengths plus one separator between items, so a
    token list counts as its space-joined text. Iterative: deep JSON cannot overflow the stack."""
    chars, surrogate, stack = 0, False, [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            chars += len(v)
            surrogate = surrogate or _has_surrogate(v)
        elif isinstance(v, (list, dict)):
            items = list(v.values()) if isinstance(v, dict) else v
            chars += max(0, len(items) - 1)
            stack.extend(items)
    return chars, surrogate


def _has_surrogate(text: str) -> bool:
    # a JSON escape such as "\ud800" can put a lone UTF-16 surrogate into a string; no tokenizer
    # or output file can encode it. Valid UTF-8 never decodes to one, so plain text skips this.
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
