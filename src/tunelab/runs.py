"""Run folders: staged in a hidden temporary folder, renamed into place only when complete.

A crash (or Ctrl-C, or a full disk) never leaves a folder at ``output_dir`` that looks complete
but is not, and an existing folder is only replaced (with ``--overwrite``) after the new one is
fully written. ``tunelab.json`` is the marker that a folder is a finished run.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tunelab.errors import TunelabError

RUN_FILE = "tunelab.json"
FORMAT_VERSION = 1


def check_output_dir(output_dir: str | Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder unless ``overwrite``; fail early if unwritable."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise TunelabError(f"{out}: output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise TunelabError(f"{out}: output folder already exists; pass --overwrite to replace "
                           "it (it is only replaced once the new run has finished)")
    parent = out.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise TunelabError(f"{out}: cannot write to {probe} (permission denied)")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_partials(out: Path) -> None:
    """Drop staging folders left by runs that were killed (SIGKILL cannot clean up)."""
    for p in out.parent.glob(f".{out.name}.partial-*"):
        suffix = p.name.rsplit("-", 1)[1]
        if suffix.isdigit() and not pid_alive(int(suffix)):  # a live run is left alone
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staged_dir(output_dir: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder next to ``output_dir``; on success rename it into place."""
    out = Path(output_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(out)
        tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise TunelabError(f"{out}: cannot create the output folder ({e.strerror})") from None
    try:
        yield tmp
        check_output_dir(out, overwrite)  # a folder may have appeared while we trained
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except OSError as e:  # disk full, permissions changed, ...
        shutil.rmtree(tmp, ignore_errors=True)
        raise TunelabError(f"{out}: writing the run folder failed ({e.strerror or e}); "
                           "any existing folder there was left untouched") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_run(run_dir: str | Path) -> dict:
    """The run's self-description; a clear error if ``run_dir`` is not a finished run."""
    p = Path(run_dir)
    if not p.is_dir():
        raise TunelabError(f"{p}: model folder not found")
    f = p / RUN_FILE
    if not f.is_file():
        raise TunelabError(f"{p}: not a tunelab run folder (no {RUN_FILE}); "
                           "train one with `tunelab train ... --output-dir DIR`")
    try:
        info = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TunelabError(f"{f}: corrupt run description ({e})") from None
    if info.get("format_version") != FORMAT_VERSION:
        raise TunelabError(f"{f}: run format {info.get('format_version')!r} is not supported "
                           f"by this tunelab (expects {FORMAT_VERSION})")
    return info
