"""``tunelab functions --schema``: the tool definitions of every registered task function
(OpenAI function-calling format), generated from their signatures (see ``toolspec.py``)."""

from __future__ import annotations

from tunelab.functions.catalog import FUNCTIONS
from tunelab.functions.toolspec import tool_spec


def tools() -> list[dict]:
    """The tool definitions of every registered task function, in registration order."""
    return [tool_spec(fn, name) for name, fn in FUNCTIONS.items()]
