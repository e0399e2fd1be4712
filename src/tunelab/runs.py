"""Run folders: the one reader and writer of a run's self-description.

This module alone reads and writes ``tunelab.json`` (a typed :class:`RunInfo` with a format
version), ``metrics.json``, ``config.yaml`` and ``train_log.jsonl``; weights, tokenizers and ONNX
graphs stay with the method or exporter that writes them. Every system on top of the engine
(serving, functions, the studio, monitoring, ...) reads run folders through here.

Folders are staged in a hidden temporary folder and renamed into place only when complete. A
crash (or Ctrl-C, or a full disk) never leaves a folder at ``output_dir`` that looks complete
but is not, and an existing folder is only replaced (with ``--overwrite``) after the new one is
fully written. ``tunelab.json``, written last, is the marker that a folder is finished.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from tunelab.errors import TunelabError
from tunelab.files import as_os_error, atomic_write_text, fsync_dir, fsync_tree

RUN_FILE = "tunelab.json"
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_DONE = "checkpoint.json"  # written last: marks a checkpoint complete
FORMAT_VERSION = 1


def check_output_dir(output_dir: str | Path, overwrite: bool) -> None:
    """Refuse an existing non-empty folder unless ``overwrite``; fail early if unwritable."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise TunelabError(f"{out}: output path exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise TunelabError(
            f"{out}: output folder already exists; pass --overwrite to replace "
            "it (it is only replaced once the new run has finished)"
        )
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


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first; the start time in
    clock ticks since boot at index 19), or None when there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and ")"


def _partials(out: Path) -> Iterator[tuple[Path, int]]:
    """(staging folder, pid of the process writing it) of every run of ``out`` being written."""
    for p in out.parent.glob(f".{out.name}.partial-*"):
        suffix = p.name.rsplit("-", 1)[1]
        if suffix.isdigit():
            yield p, int(suffix)


def _remove_stale_partials(out: Path) -> None:
    """Drop staging folders left by runs that were killed (SIGKILL cannot clean up)."""
    for p, pid in _partials(out):
        if not pid_alive(pid):  # a live run is left alone
            shutil.rmtree(p, ignore_errors=True)


def checkpoints_dir(output_dir: str | Path) -> Path:
    """Where the checkpoints of an unfinished run of ``output_dir`` are kept."""
    out = Path(output_dir)
    return out.parent / f"{out.name}.checkpoints"


def resumable(output_dir: str | Path) -> bool:
    """Whether an unfinished run of ``output_dir`` left a complete checkpoint (``--resume``
    continues from it)."""
    folder = checkpoints_dir(output_dir)
    return folder.is_dir() and any((p / CHECKPOINT_DONE).is_file() for p in folder.glob("step-*"))


def live_folder(output_dir: str | Path) -> Path | None:
    """The folder a run of ``output_dir`` is being written in now (its ``train_log.jsonl``
    grows there until the run finishes and the folder takes the name), or None."""
    out = Path(output_dir)
    live = [p for p, pid in _partials(out) if pid_alive(pid) and p.is_dir()]
    return max(live, key=lambda p: p.stat().st_mtime) if live else None


def train_log_path(output_dir: str | Path) -> Path | None:
    """The training log of the run of ``output_dir``: the live run's while one trains, else the
    finished run's; None when there is neither."""
    live = live_folder(output_dir)
    for folder in (live, Path(output_dir)):
        if folder is not None and (folder / LOG_FILE).is_file():
            return folder / LOG_FILE
    return None


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
        fsync_tree(tmp)  # on disk before it takes the name: a crash cannot leave it half there
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.rename(out, old)
            os.rename(tmp, out)
            fsync_dir(out.parent)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
            fsync_dir(out.parent)
    except Exception as e:  # disk full, permissions changed, ... (also from Rust/C++ writers)
        shutil.rmtree(tmp, ignore_errors=True)
        err = as_os_error(e, out.parent)
        if err is None:
            raise
        raise TunelabError(
            f"{out}: writing the run folder failed ({err.strerror or err}); "
            "any existing folder there was left untouched"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _read_json(f: Path, what: str) -> Any:
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunelabError(f"{f}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TunelabError(f"{f}: corrupt {what} ({e})") from None


@dataclass
class RunInfo:
    """A run folder's self-description (``tunelab.json``): what it is, how to load it, and how
    it was made. Kinds: ``run`` (tunelab train), ``ensemble`` (tunelab ensemble); an export is
    a run with an ``export`` record. Keys this version does not know are kept in ``extra`` and
    written back unchanged."""

    task: str
    method: str
    text_column: str
    label_column: str
    max_length: int
    labels: list[str] = field(default_factory=list)
    target: dict | None = None  # the task's spec: labels, thresholds, mean/std, ...
    base_model: dict | None = None  # {"source", "path", "kind": alias|local|hub}
    kind: str = "run"
    format_version: int = FORMAT_VERSION
    tunelab_version: str = ""
    created: str = ""
    torch: str | None = None
    parameters: dict | None = None  # {"trainable", "total"}
    method_details: dict | None = None
    regularisation: dict | None = None
    export: dict | None = None  # tunelab export's record (format, parity, metrics, ...)
    members: list[str] | None = None  # ensemble: member folders, relative to this one
    member_sources: list[str] | None = None
    combine: str | None = None
    metrics: dict | None = None  # ensemble: members' and ensemble's scores
    precision: str | None = None  # what training computed in (auto resolved)
    machine: dict | None = None  # where it was trained (tunelab.machine.describe)
    batching: str | None = None  # length-grouped | random | packed (training batches)
    # continual learning: every stage that led to this run, oldest first, this run last
    # ({"stage", "run", "strategy", "labels", "data", "test_metrics"}: tunelab.training.continual)
    lineage: list[dict] | None = None
    # every file of the folder: {relative path: {"size", "sha256"}} (tunelab.integrity)
    files: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def spec(self) -> dict:
        """What the targets are: {"labels": [...]} or regression {"mean", "std", ...}."""
        return self.target or {"labels": list(self.labels)}

    def to_json(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        if out.get("kind") == "run":  # folders of format 1 had no kind for plain runs
            del out["kind"]
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: Any, source: Path) -> RunInfo:
        """Check and convert a parsed ``tunelab.json``; errors name the file and the key."""
        if not isinstance(data, dict):
            raise TunelabError(f"{source}: corrupt run description (not a JSON object)")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise TunelabError(
                f"{source}: run format {version!r} is not supported by this "
                f"tunelab (expects {FORMAT_VERSION})"
            )
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = [
            k
            for k in ("task", "method", "text_column", "label_column", "max_length")
            if k not in data
        ]
        if missing:
            raise TunelabError(f"{source}: corrupt run description, key '{missing[0]}' is missing")
        values = {k: v for k, v in data.items() if k in known}
        if values.get("kind") is None:
            values["kind"] = "run"
        try:
            values["max_length"] = int(values["max_length"])
        except (TypeError, ValueError):
            raise TunelabError(
                f"{source}: key 'max_length' = {data['max_length']!r} is not a number"
            ) from None
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


def read_run(run_dir: str | Path) -> RunInfo:
    """The run's self-description; a clear error if ``run_dir`` is not a finished run."""
    p = Path(run_dir)
    if not p.is_dir():
        raise TunelabError(f"{p}: model folder not found")
    f = p / RUN_FILE
    if not f.is_file():
        raise TunelabError(
            f"{p}: not a tunelab run folder (no {RUN_FILE}); "
            "train one with `tunelab train ... --output-dir DIR`"
        )
    return RunInfo.from_json(_read_json(f, "run description"), f)


def write_run(run_dir: Path, info: RunInfo) -> None:
    """Write ``tunelab.json``: last, as it marks the folder complete. It lists every other
    file of the folder with its size and checksum, which loading checks."""
    from tunelab.integrity import record_files

    info.files = record_files(Path(run_dir))
    write_json(Path(run_dir) / RUN_FILE, info.to_json())


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run (its ``tunelab.json``)."""
    return (Path(folder) / RUN_FILE).is_file()


def read_metrics(run_dir: str | Path, required: bool = True) -> dict:
    """The run's ``metrics.json`` ({} when absent and not ``required``)."""
    f = Path(run_dir) / METRICS_FILE
    if not required and not f.is_file():
        return {}
    data = _read_json(f, "metrics file")
    if not isinstance(data, dict):
        raise TunelabError(f"{f}: corrupt metrics file (not a JSON object)")
    return data


def write_metrics(run_dir: Path, metrics: dict) -> None:
    write_json(Path(run_dir) / METRICS_FILE, metrics)


def read_config(folder: str | Path, required: bool = True) -> dict:
    """The flat settings of a run (or checkpoint) folder's ``config.yaml``, as written; {}
    when absent and not ``required``. Validation against today's keys is the caller's."""
    from tunelab.config import read_mapping

    f = Path(folder) / CONFIG_FILE
    if not required and not (f.is_file() and f.stat().st_size):
        return {}
    return read_mapping(f, "run config")


def write_config(folder: Path, yaml_text: str) -> None:
    atomic_write_text(Path(folder) / CONFIG_FILE, yaml_text)


def open_train_log(folder: Path | None) -> IO[str]:
    """The writer of ``train_log.jsonl`` (one JSON event per line); a sink for None."""
    if folder is None:
        return open(os.devnull, "w", encoding="utf-8")
    return open(Path(folder) / LOG_FILE, "w", encoding="utf-8")


def read_train_log(run_dir: str | Path) -> list[dict]:
    """The events of ``train_log.jsonl`` (train and eval), in order; [] when absent."""
    f = Path(run_dir) / LOG_FILE
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line]


def data_file(run_dir: str | Path, split: str) -> str | None:
    """The file a run used for ``split`` (train, validation, test), from its config.yaml."""
    value = read_config(run_dir, required=False).get(split)
    return str(value) if value else None


def copy_records(src: Path, dst: Path) -> None:
    """Carry a run's settings and scores into a folder made from it (an export)."""
    for name in (METRICS_FILE, CONFIG_FILE):
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
