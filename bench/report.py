"""What every bench script ends with: the result as indented JSON on stdout and, with
``--out``, the same text in a file (``bench/results/*.json``)."""

from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, out: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
