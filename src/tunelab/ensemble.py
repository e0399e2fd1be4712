"""Ensembles: several runs of the same task predict together by averaging probabilities.

    tunelab ensemble --model-dirs runs/a runs/b runs/c --output ens/ [--eval-data test.csv]

The folder is self-contained (the members are copied into ``members/``) and loads like any
other model: ``tunelab.load("ens/")``, ``tunelab predict``, ``tunelab serve``. Text
classification averages the members' softmax probabilities; multi-label averages their
sigmoid probabilities and applies the first member's tuned thresholds. Members may use
different base models and tokenizers; their label sets must match (order may differ).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tunelab.data.batching import predict_logits
from tunelab.errors import TunelabError
from tunelab.inference import TunedModel, load_run
from tunelab.runs import RunInfo, read_run, staged_dir, write_metrics, write_run
from tunelab.tasks import TASKS, get_task
from tunelab.tasks.encoding import encode_split
from tunelab.version import __version__

KIND = "ensemble"


def _averaged(task: str) -> bool:
    return get_task(task).probabilities is not None


def _probabilities(task: str, logits: np.ndarray) -> np.ndarray:
    if get_task(task).probabilities == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def _as_logits(task: str, p: np.ndarray) -> np.ndarray:
    """Scores whose softmax (sigmoid) gives back ``p``, for the task's own decoder."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p) if get_task(task).probabilities == "sigmoid" else np.log(p)


class EnsembleModel(TunedModel):
    """Loaded ensemble: the TunedModel interface, predictions from the members' mean."""

    def __init__(self, run_dir: Path, info: RunInfo, members: list[TunedModel]) -> None:
        first = members[0]
        kinds = ", ".join(sorted({m.backend for m in members}))
        super().__init__(run_dir, info, None, first.tokenizer, backend=f"ensemble ({kinds})")
        self.members = members
        self.spec = first.spec
        # each member's columns in the first member's label order
        self.order = [[m.labels.index(n) for n in self.labels] for m in members]

    def __repr__(self) -> str:
        return (
            f"EnsembleModel({str(self.run_dir)!r}, task={self.task_name!r}, "
            f"members={len(self.members)}, labels={self.labels})"
        )

    def _mean(self, member_logits: list[np.ndarray]) -> np.ndarray:
        probs = [
            _probabilities(self.task_name, lg)[:, cols]
            for lg, cols in zip(member_logits, self.order, strict=True)
        ]
        return _as_logits(self.task_name, np.mean(probs, axis=0))

    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return self._mean([m.logits(texts, batch_size) for m in self.members])

    def evaluate(
        self,
        path: str,
        text_column: str | None = None,
        label_column: str | None = None,
        batch_size: int = 64,
    ) -> dict:
        ex, lc = self.read_labelled(path, text_column, label_column)
        member_logits, y = [], None
        for m in self.members:  # each member with its own tokenizer
            ids, ym = encode_split(m.task, m.tokenizer, ex, m.spec, m.max_length, lc)
            y = ym if y is None else y
            assert m.model is not None  # members are plain runs, never ensembles
            member_logits.append(predict_logits(m.model, ids, m.pad_id, batch_size))
        # the targets are encoded in the first member's label order, as is the mean
        assert self.task.compute_metrics is not None
        return self.task.compute_metrics(self._mean(member_logits), np.array(y), self.spec)


def load_ensemble(
    run_dir: Path, info: RunInfo, device: str | None = None, precision: str = "auto"
) -> EnsembleModel:
    """Each member on its own backend (members are never ensembles themselves)."""
    from tunelab.integrity import check_folder

    check_folder(run_dir, info.files)  # the members check their own files
    members = [
        load_run(run_dir / rel, read_run(run_dir / rel), device, precision)
        for rel in info.members or []
    ]
    if not members:
        raise TunelabError(f"{run_dir}: an ensemble without members")
    return EnsembleModel(run_dir, info, members)


def make_ensemble(
    model_dirs: list[str],
    output: str,
    eval_data: str | None = None,
    overwrite: bool = False,
    log=print,
) -> RunInfo:
    """Write the ensemble folder (staged, then renamed into place); returns its tunelab.json.
    With ``eval_data``, every member and the ensemble are scored on it (metrics.json)."""
    if len(model_dirs) < 2:
        raise TunelabError("an ensemble needs at least two --model-dirs")
    infos = [read_run(d) for d in model_dirs]
    tasks = [t for t in TASKS if _averaged(t)]
    for d, i in zip(model_dirs, infos, strict=True):
        if i.task not in tasks:
            raise TunelabError(
                f"{d}: a {i.task} model; ensembles average probabilities "
                f"of {' or '.join(tasks)} models"
            )
        if i.kind == KIND:
            raise TunelabError(f"{d}: already an ensemble; list its members instead")
        if i.task != infos[0].task or sorted(i.labels) != sorted(infos[0].labels):
            raise TunelabError(
                f"{d}: its task or labels differ from {model_dirs[0]}'s "
                f"({i.task} {i.labels} vs {infos[0].task} {infos[0].labels})"
            )
    out = Path(output)
    if out.exists() and not overwrite:
        raise TunelabError(f"{out}: already exists (use --overwrite to replace it)")
    with staged_dir(out, overwrite=True) as tmp:
        rels = []
        for k, d in enumerate(model_dirs):
            rel = f"members/{k}-{Path(d).resolve().name}"
            shutil.copytree(
                d, tmp / rel, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "mlruns")
            )
            rels.append(rel)
        first = infos[0]
        info = RunInfo(
            task=first.task,
            method=KIND,
            kind=KIND,
            labels=first.labels,
            target=first.target,
            text_column=first.text_column,
            label_column=first.label_column,
            max_length=first.max_length,
            members=rels,
            member_sources=[str(Path(d).resolve()) for d in model_dirs],
            combine="mean of probabilities",
            tunelab_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if eval_data:
            ens = load_ensemble(tmp, info)
            scores = {"ensemble": ens.evaluate(eval_data)}
            for rel, m in zip(rels, ens.members, strict=True):
                scores[rel] = m.evaluate(eval_data)
            keep = ("accuracy", "macro_f1", "micro_f1", "samples_f1", "n")
            summary = {k: {m: v for m, v in s.items() if m in keep} for k, s in scores.items()}
            write_metrics(tmp, {"eval_data": eval_data, **summary})
            info.metrics = summary
            for name, s in summary.items():
                log(
                    f"  {name}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in s.items() if isinstance(v, float))
                )
        write_run(tmp, info)
    return info
