"""Scoring a continued run on every stage it learnt (``tunelab evaluate --stages``), and
loading the stages of a ``lora-per-task`` run on one base (``tunelab.load_stages``).

The lineage a continued run records (:mod:`tunelab.training.continual`) names each stage's test
file with its checksum and the scores the stage had when it was trained. The final model scores
each test file again; ``forgetting`` is the drop since (positive: forgotten), and
``backward_transfer`` the mean change over the earlier stages (Lopez-Paz and Ranzato 2017;
negative: forgotten). A test file that is gone is reported, not fatal; one that changed since is
scored and flagged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.runs import RunInfo, read_metrics, read_run
from tunelab.training.checkpoint import fingerprint
from tunelab.training.continual import STAGES_DIR


def lineage_of(run_dir: str | Path) -> tuple[RunInfo, list[dict]]:
    info = read_run(run_dir)
    if not info.lineage:
        raise TunelabError(
            f"{run_dir}: not a continued run (no lineage): --stages scores the stages of a run "
            "made with `tunelab train --continue-from`"
        )
    return info, info.lineage


def load_stages(run_dir: str | Path, device: str | None = None, precision: str = "auto"):
    """A ``lora-per-task`` run's stages as a :class:`tunelab.model_set.ModelSet` named by stage
    number ("1", "2", ...), every adapter on one copy of the base: the task-incremental
    setting, where a prediction names its stage (``predict(texts, adapter="2")``)."""
    from tunelab.loading import load

    info, lineage = lineage_of(run_dir)
    if lineage[-1]["strategy"] != "lora-per-task":
        raise TunelabError(
            f"{run_dir}: a {lineage[-1]['strategy']} run has one model for every stage; "
            "load it with tunelab.load"
        )
    folders: dict[str, Any] = {}
    for st in lineage[:-1]:
        folders[str(st["stage"])] = Path(run_dir) / STAGES_DIR / str(st["stage"])
    folders[str(lineage[-1]["stage"])] = Path(run_dir)
    return load(folders, device, precision)


def evaluate_stages(run_dir: str | Path, batch_size: int = 64, precision: str = "auto") -> dict:
    """Every stage's test set scored by the final run (``lora-per-task``: by the stage's own
    adapter); see the module docstring for the figures."""
    from tunelab.loading import load

    info, lineage = lineage_of(run_dir)
    per_task = lineage[-1]["strategy"] == "lora-per-task"
    models = load_stages(run_dir, precision=precision) if per_task else None
    final = None if per_task else load(run_dir, precision=precision)
    own = read_metrics(run_dir, required=False).get("test")
    rows: list[dict] = []
    for st in lineage:
        row: dict[str, Any] = {k: st.get(k) for k in ("stage", "strategy", "labels")}
        test = (st.get("data") or {}).get("test")
        then = own if st is lineage[-1] else st.get("test_metrics")
        rows.append(row)
        if not test:
            row["skipped"] = "the stage recorded no test file"
            continue
        path = test["path"]
        row["test"] = path
        now = fingerprint({"test": path}).get("test")
        if now is None:
            row["skipped"] = f"test file not found: {path}"
            continue
        if now["sha256"] != test.get("sha256"):
            row["changed"] = "the test file changed since the stage was trained"
        model = models[str(st["stage"])] if models is not None else final
        assert model is not None  # one of the two is loaded
        m = model.evaluate(path, batch_size=batch_size)
        row.update({k: m[k] for k in ("accuracy", "macro_f1", "n")})
        if then and "accuracy" in then:
            row["accuracy_when_trained"] = then["accuracy"]
            if st is not lineage[-1]:  # the final stage is the model itself
                row["forgetting"] = then["accuracy"] - m["accuracy"]
    scored = [r for r in rows if "accuracy" in r]
    earlier = [r for r in scored if "forgetting" in r]
    out: dict[str, Any] = {"run": str(run_dir), "stages": rows}
    if scored:
        out["average_accuracy"] = sum(r["accuracy"] for r in scored) / len(scored)
    if earlier:
        out["backward_transfer"] = -sum(r["forgetting"] for r in earlier) / len(earlier)
    return out
