"""How a setting is declared: its default, help line and an optional range check.

Shared by the run configuration's groups (:mod:`tunelab.config`) and the groups that live in
their own modules (:mod:`tunelab.continual_args`).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

# Ranges a field may declare with ``check=``: the test and the words of the error. They become
# the same ``check``/``why`` metadata a method option carries (``methods.base.option``), so one
# checker (``methods.base.field_problem``) and the studio's forms read both.
RANGES: dict[str, tuple[Any, str]] = {
    ">0": (lambda v: v > 0, "must be > 0"),
    ">=0": (lambda v: v >= 0, "must be >= 0"),
    ">=1": (lambda v: v >= 1, "must be >= 1"),
    ">=8": (lambda v: v >= 8, "must be >= 8"),
    "[0,1)": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "(0,1)": (lambda v: 0 < v < 1, "must be in (0, 1)"),
}


def setting(default: Any, help: str, check: str | None = None, **meta: Any) -> Any:
    """A settings field: ``check`` names one of :data:`RANGES`; ``meta`` adds e.g. ``choices``."""
    if check is not None:
        meta["check"], meta["why"] = RANGES[check]
    return field(default=default, metadata={"help": help, **meta})
