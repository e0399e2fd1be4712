"""What every subcommand's arguments share: the ``--help`` layout (descriptions wrap to the
terminal, epilogs of examples keep their line breaks) and flags derived from the config
dataclasses, so a command that trains never redeclares a training flag or its default."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from tunelab import config as C
from tunelab.data_policy import ReadPolicy
from tunelab.errors import ConfigError, TunelabError


class ExamplesFormatter(argparse.HelpFormatter):
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:  # an example block: as written
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_config_flags(
    p: argparse.ArgumentParser, exclude: tuple[str, ...] = (), defaults: dict | None = None
) -> None:
    """One flag per config key (``--learning-rate`` for ``learning_rate``), grouped as the
    dataclasses are; values are checked later by ``config.coerce``. ``defaults`` shows a
    command's own defaults in the help (the command applies them itself)."""
    known = C.fields()
    defaults = defaults or {}
    for group_name, cls in C.groups().items():
        g = p.add_argument_group(f"{group_name} options")
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            flag = "--" + f.name.replace("_", "-")
            tp, _ = C.base_type(known[f.name][2])
            value = defaults.get(f.name, f.default)
            default = f" (default: {value})" if value is not None else ""
            help_ = f.metadata["help"] + default
            if tp is bool:
                g.add_argument(
                    flag,
                    dest=f.name,
                    action=argparse.BooleanOptionalAction,
                    default=argparse.SUPPRESS,
                    help=help_,
                )
                continue
            # --learning-rate and --learning_rate both work; values are checked by C.coerce
            names = [flag] + ([f"--{f.name}"] if "_" in f.name else [])
            g.add_argument(
                *names,
                dest=f.name,
                type=str,
                default=argparse.SUPPRESS,
                metavar=tp.__name__.upper(),
                help=help_,
            )


def config_flag(
    p: argparse.ArgumentParser, key: str, flag: str | None = None, default: Any = None
) -> None:
    """One config key as a flag under another name (``--copies`` for ``augment_copies``),
    with the key's type, help and default (or ``default``)."""
    _, f, tp = C.fields()[key]
    tp, _ = C.base_type(tp)
    value = f.default if default is None else default
    kind: dict[str, Any] = (
        {"action": argparse.BooleanOptionalAction} if tp is bool else {"type": tp}
    )
    p.add_argument(
        flag or "--" + key.replace("_", "-"),
        dest=key,
        default=value,
        help=f"{f.metadata['help']} (default: {value})",
        **kind,
    )


def read_policy_flags(p: argparse.ArgumentParser) -> None:
    """``--max-field-chars`` and ``--drop-missing`` for a command that reads data files outside
    a run's settings (evaluate, predict); ``read_policy(args)`` gives their policy."""
    config_flag(p, "max_field_chars")
    config_flag(p, "drop_missing")


def read_policy(a: argparse.Namespace) -> ReadPolicy:
    """The data readers' policy of ``read_policy_flags``'s flags."""
    if a.max_field_chars < 1:
        raise ConfigError(f"--max-field-chars {a.max_field_chars}: must be >= 1")
    return ReadPolicy(a.max_field_chars, a.drop_missing)


def parse_named(specs: list[str], flag: str, example: str) -> dict[str, str]:
    """``NAME=DIR`` pairs of a repeatable ``flag`` (``--model``, ``--assistant``): the name
    goes into URLs, so letters, digits, '-', '_' or '.', and each at most once."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise TunelabError(f"{flag} {spec!r}: expected NAME=DIR, e.g. {flag} {example}")
        if not all(c.isalnum() or c in "-_." for c in name):
            raise TunelabError(f"{flag} {spec!r}: a name uses letters, digits, '-', '_' or '.'")
        if name in out:
            raise TunelabError(f"{flag} {name!r} is given twice")
        out[name] = folder
    return out
