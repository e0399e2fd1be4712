"""``tunelab runs``: what is in a runs folder (finished, running, resumable, failed), and two
runs side by side."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.runs import RunInfo, is_run, pid_alive, read_config, read_metrics, read_run
from tunelab.training.checkpoint import complete, read_state

SUFFIX = ".checkpoints"


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
        elif p.name.startswith(".") and ".partial-" in p.name:
            run = p.name[1:].rsplit(".partial-", 1)
            pid = int(run[1]) if run[1].isdigit() else 0
            if pid and pid_alive(pid):
                rows.setdefault(run[0], {"run": run[0], "status": f"running (pid {pid})"})
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


def compare_runs(a: str | Path, b: str | Path) -> str:
    """Settings that differ and every summary metric, side by side."""
    ra, rb = Path(a), Path(b)
    ia, ib = read_run(ra), read_run(rb)
    ca, cb = read_config(ra), read_config(rb)
    ma, mb = read_metrics(ra), read_metrics(rb)
    rows = [("", ra.name, rb.name)]
    for k in sorted(set(ca) | set(cb)):
        if ca.get(k) != cb.get(k) and k != "output_dir":
            rows.append((k, str(ca.get(k)), str(cb.get(k))))
    rows.append(
        (
            "trainable parameters",
            f"{(ia.parameters or {}).get('trainable', 0):,}",
            f"{(ib.parameters or {}).get('trainable', 0):,}",
        )
    )
    for split in ("validation", "test"):
        for k, v in ma.get(split, {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                w = mb.get(split, {}).get(k)
                rows.append(
                    (
                        f"{split} {k}",
                        f"{v:.4f}" if isinstance(v, float) else str(v),
                        f"{w:.4f}" if isinstance(w, float) else str(w),
                    )
                )
    for k in ("train_seconds", "examples_per_s", "peak_memory_mb"):
        va, vb = ma["training"].get(k), mb["training"].get(k)
        rows.append(
            (
                k.replace("_", " "),
                f"{va:.1f}" if va is not None else "",
                f"{vb:.1f}" if vb is not None else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
