"""``tunelab runs``: what is in a runs folder (finished, running, resumable, failed), and two
runs side by side.

A run stages its folder in a hidden ``.NAME.partial-PID`` next to it and renames it into place
when finished; a killed run leaves that folder behind until the same command with ``--resume``
(or any run with that output folder) clears it. ``tunelab runs`` lists these leftovers with
their process and checkpoint, and ``--clean-partial`` deletes the ones whose process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.runs import (
    RunInfo,
    is_run,
    pid_alive,
    proc_stat,
    read_config,
    read_metrics,
    read_run,
)
from tunelab.training.checkpoint import complete, read_state

SUFFIX = ".checkpoints"
# .NAME.partial-PID: a run (or export) being written; .NAME.old-PID: the folder --overwrite was
# replacing when the process died between its two renames
LEFTOVER = re.compile(r"^\.(?P<run>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)$")


def _started_after(pid: int, folder: Path) -> bool:
    """Whether process ``pid`` started after ``folder`` was last changed: then it is another
    process that reuses the number of the one that wrote the folder (Linux; False elsewhere)."""
    try:
        fields = proc_stat(pid)
        if fields is None:
            return False
        ticks = int(fields[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
        return started > folder.stat().st_mtime + 1  # btime has 1 s resolution
    except (OSError, ValueError, IndexError, StopIteration):
        return False


def leftovers(root: str | Path) -> list[dict]:
    """The hidden folders of runs that are being written or were killed while written:
    folder, run, pid, whether that process still runs, and the newest checkpoint's step."""
    base = Path(root)
    out = []
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        m = LEFTOVER.match(p.name)
        if m is None or not p.is_dir():
            continue
        pid = int(m["pid"])
        found = complete(base / f"{m['run']}{SUFFIX}")
        out.append(
            {
                "folder": p.name,
                "run": m["run"],
                "kind": m["kind"],
                "pid": pid,
                "alive": pid_alive(pid) and not _started_after(pid, p),
                "checkpoint_step": read_state(found[-1]).step if found else None,
            }
        )
    return out


def clean_leftovers(root: str | Path) -> tuple[list[str], list[dict]]:
    """Delete the leftover folders whose process is gone; returns (deleted, kept: each with
    why). Checkpoints are kept: the runs can still be resumed. The previous folder an
    ``--overwrite`` was replacing is only deleted once its replacement is in place."""
    deleted, kept = [], []
    for row in leftovers(root):
        if row["alive"]:
            kept.append({**row, "why": f"its process (pid {row['pid']}) is still running"})
            continue
        if row["kind"] == "old" and not (Path(root) / row["run"]).exists():
            kept.append({**row, "why": f"the only copy of {row['run']}: rename it back"})
            continue
        shutil.rmtree(Path(root) / row["folder"], ignore_errors=True)
        if (Path(root) / row["folder"]).exists():
            raise TunelabError(f"{Path(root) / row['folder']}: cannot delete it (permissions?)")
        deleted.append(row["folder"])
    return deleted, kept


def format_leftovers(rows: list[dict], root: str | Path) -> str:
    """The leftover folders, what each is, and how to resume or clean it."""
    if not rows:
        return ""
    lines = ["hidden folders of interrupted runs (and of runs being written):"]
    for r in rows:
        if r["alive"]:
            what = f"pid {r['pid']} is still running: the run is being written"
        elif r["kind"] == "old":
            what = f"pid {r['pid']} is gone: the previous {r['run']}, replaced by --overwrite"
            if not (Path(root) / r["run"]).exists():
                what += f" ({r['run']} is missing: rename this folder back, or resume the run)"
        elif r["checkpoint_step"] is not None:
            what = (
                f"pid {r['pid']} is gone; checkpoint at step {r['checkpoint_step']} in "
                f"{r['run']}{SUFFIX}: resume with the same command plus --resume"
            )
        else:
            what = f"pid {r['pid']} is gone; no checkpoint: run the command again"
        lines.append(f"  {r['folder']}  {what}")
    if any(not r["alive"] for r in rows):
        lines.append(
            f"delete the folders of processes that are gone (checkpoints are kept): "
            f"tunelab runs {root} --clean-partial"
        )
    return "\n".join(lines)


def _key_metric(run: Path, info: RunInfo) -> tuple[str, float | None, float | None]:
    """(which metric, its value, training seconds) from the run's metrics.json."""
    from tunelab.tasks import get_task

    try:
        metrics = read_metrics(run)
    except TunelabError:
        return "", None, None
    metric = get_task(info.task).default_metric
    split = "test" if "test" in metrics else "validation"
    return (
        f"{split} {metric}",
        metrics.get(split, {}).get(metric),
        metrics.get("training", {}).get("train_seconds"),
    )


def list_runs(root: str | Path) -> list[dict]:
    """One row per run in ``root``: name, status, task, model, method, metric, seconds."""
    base = Path(root)
    if not base.is_dir():
        raise TunelabError(f"{base}: runs folder not found")
    rows: dict[str, dict] = {}
    for p in sorted(base.iterdir()):
        if is_run(p):
            info = read_run(p)
            name, value, secs = _key_metric(p, info)
            rows[p.name] = {
                "run": p.name,
                "status": "finished",
                "task": info.task,
                "model": (info.base_model or {}).get("source"),
                "method": info.method,
                "metric": name,
                "value": value,
                "train_seconds": secs,
            }
        elif p.name.endswith(SUFFIX) and complete(p):
            name = p.name[: -len(SUFFIX)]
            last = complete(p)[-1]
            state = asdict(read_state(last))
            cfg = read_config(last, required=False)
            row = rows.setdefault(name, {"run": name})
            if "status" not in row:
                row.update(
                    {
                        "status": f"resumable (step {state['step']})",
                        "task": cfg.get("task"),
                        "model": cfg.get("model"),
                        "method": cfg.get("method"),
                        "train_seconds": state.get("train_seconds"),
                    }
                )
    for left in leftovers(base):
        if left["kind"] != "partial":
            continue
        row = rows.setdefault(left["run"], {"run": left["run"]})
        if left["alive"]:
            row["status"] = f"running (pid {left['pid']})"
        elif row.get("status", "").startswith("resumable"):
            row["status"] = f"interrupted, {row['status']}"
        elif "status" not in row:
            row["status"] = "interrupted (no checkpoint)"
    return list(rows.values())


def format_runs(rows: list[dict]) -> str:
    head = ("run", "status", "task", "model", "method", "metric", "value", "train (s)")
    lines = [head]
    for r in rows:
        v, s = r.get("value"), r.get("train_seconds")
        lines.append(
            (
                r["run"],
                r.get("status", ""),
                r.get("task") or "",
                r.get("model") or "",
                r.get("method") or "",
                r.get("metric") or "",
                f"{v:.4f}" if isinstance(v, float) else "",
                f"{s:.0f}" if isinstance(s, (int, float)) else "",
            )
        )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in lines
    )


def compare_table(folders: Sequence[str | Path]) -> dict:
    """Runs side by side: the settings that differ between them and every summary metric.

    Returns:
        ``runs`` (names), ``settings`` and ``metrics``: rows of ``[label, value per run]``
        (values as recorded: numbers stay numbers, absent ones are None).
    """
    paths = [Path(f) for f in folders]
    infos = [read_run(p) for p in paths]
    configs = [read_config(p) for p in paths]
    metrics = [read_metrics(p) for p in paths]
    settings = [
        [k, *(c.get(k) for c in configs)]
        for k in sorted(set().union(*configs))
        if k != "output_dir" and len({repr(c.get(k)) for c in configs}) > 1
    ]
    rows: list[list] = [
        ["trainable parameters", *((i.parameters or {}).get("trainable", 0) for i in infos)]
    ]
    for split in ("validation", "test"):
        keys = dict.fromkeys(k for m in metrics for k in m.get(split, {}))
        for k in keys:
            values = [m.get(split, {}).get(k) for m in metrics]
            if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                rows.append([f"{split} {k}", *values])
    for k in ("train_seconds", "examples_per_s", "peak_memory_mb"):
        rows.append([k.replace("_", " "), *(m.get("training", {}).get(k) for m in metrics)])
    return {"runs": [p.name for p in paths], "settings": settings, "metrics": rows}


def compare_runs(a: str | Path, b: str | Path) -> str:
    """Settings that differ and every summary metric, side by side."""
    t = compare_table([a, b])

    def shown(label: str, v) -> str:
        if v is None:
            return "" if label in ("train seconds", "examples per s", "peak memory mb") else "None"
        if label == "trainable parameters":
            return f"{v:,}"
        if label in ("train seconds", "examples per s", "peak memory mb"):
            return f"{v:.1f}"
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    rows = [("", *t["runs"])]
    rows += [(k, str(va), str(vb)) for k, va, vb in t["settings"]]
    rows += [(k, shown(k, va), shown(k, vb)) for k, va, vb in t["metrics"]]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
