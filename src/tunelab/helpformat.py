"""``--help`` layout for subcommands: descriptions wrap to the terminal, epilogs (examples)
keep their line breaks."""

from __future__ import annotations

import argparse


class ExamplesFormatter(argparse.HelpFormatter):
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # an example block: as written
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
