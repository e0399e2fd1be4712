"""Continual learning: a finished run continued on new data without forgetting the old.

``tunelab train --continue-from RUN --train NEW ... --continual STRATEGY``. The new run keeps
the old label set in its order and appends the labels that are new in ``NEW``; the head's rows
of the old labels are copied, the new rows start fresh, so before training the old labels'
scores are exactly the old run's. Strategies (the same learning rate, epochs and stage order
for each, so their costs compare):

- ``naive``: fine-tune on the new data only; the measured baseline of forgetting.
- ``replay``: mix in a class-balanced sample of earlier data, ``replay_ratio`` per new example,
  drawn from the buffer the previous run keeps (``replay.jsonl``, at most ``replay_size``
  examples; a first stage's is drawn from its training file). The run keeps the updated
  buffer for the next stage.
- ``ewc``: add ``lambda/2 sum F_i (w_i - w_prev_i)^2`` (:mod:`tunelab.training.ewc`), F
  estimated on the previous stage's data and summed over the stages (``ewc_fisher.safetensors``).
- ``lora-per-task``: a new adapter and head on the frozen base for each stage, trained on that
  stage's labels only; nothing is forgotten because nothing is shared, but a prediction must
  name its stage (the task-incremental setting). Earlier stages' folders are copied into
  ``stages/`` so the run is self-contained; ``tunelab.load_stages`` loads them on one base.

Every run records its ``lineage`` (each stage's run, strategy, labels, data files with their
checksums and the test scores it had when trained); ``tunelab evaluate --stages`` scores every
stage's test set with the final model and reports forgetting.
"""

from __future__ import annotations

import dataclasses
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tunelab.errors import ConfigError, DataError, TunelabError
from tunelab.runs import RunInfo, read_config, read_metrics, read_run
from tunelab.tasks.examples import Examples, label_names
from tunelab.training import ewc, replay
from tunelab.training.checkpoint import fingerprint

if TYPE_CHECKING:
    from tunelab import config as C
    from tunelab.models.registry import ResolvedModel
    from tunelab.tasks import Task

STAGES_DIR = "stages"  # lora-per-task: the earlier stages' run folders
SUMMARY = ("accuracy", "macro_f1", "n")


@dataclass
class Previous:
    """The run being continued and what this stage adds to it."""

    folder: Path
    info: RunInfo
    strategy: str
    lineage: list[dict]  # every earlier stage, oldest first; the continued run last
    new_rows: list[dict] = field(default_factory=list)  # this stage's own training examples
    earlier: list[dict] = field(default_factory=list)  # replay: the earlier examples drawn from
    replayed: int = 0  # earlier examples mixed in (all epochs' blocks)
    per_epoch: int = 0  # ...of which one epoch trains on
    distilled: int = 0  # dark experience replay: the old labels whose scores are kept
    fisher: dict = field(default_factory=dict)  # ewc: the Fisher sum this stage anchors to
    fisher_seconds: float = 0.0


def previous(cfg: C.RunConfig, task: Task, source: ResolvedModel) -> Previous | None:
    """The run ``continue_from`` names, checked against this run's settings; None when the
    run starts from the pretrained model."""
    c = cfg.continual
    if not c.continue_from:
        return None
    folder = Path(c.continue_from)
    where = f"--continue-from {folder}"
    info = read_run(folder)
    if info.kind != "run" or info.export:
        raise ConfigError(f"{where}: an export or ensemble folder; continue from a training run")
    if info.task != task.name:
        raise ConfigError(f"{where}: a {info.task} run cannot be continued as {task.name} (--task)")
    if task.name != "text-classification":
        raise ConfigError(
            f"{where}: continual learning grows a label set, which tunelab supports for "
            "text-classification runs"
        )
    base = info.base_model or {}
    if base.get("kind") == "alias":
        from tunelab.models import resolve_model

        prev_path = resolve_model(base["source"]).path
    else:
        prev_path = str(base.get("path", ""))
    if Path(prev_path).resolve() != Path(source.path).resolve():
        raise ConfigError(
            f"{where}: the run was trained from {base.get('source')!r}, not "
            f"{cfg.model.model!r}; continue it on the same base model (or leave out --model)"
        )
    method = cfg.method.method
    was = (info.lineage or [{}])[-1].get("strategy")
    if was == "lora-per-task" and c.continual != "lora-per-task":
        raise ConfigError(
            f"{where}: a lora-per-task run (one adapter and label set per stage) continues only "
            "with --continual lora-per-task"
        )
    if "setfit" in (method, info.method):
        raise ConfigError(
            f"{where}: SetFit fits its head anew on every run, so it cannot continue one; "
            "train a new SetFit run on all the data"
        )
    if c.continual == "lora-per-task":
        if method == "full":
            raise ConfigError(
                f"key 'continual' = 'lora-per-task' trains an adapter per stage on a frozen "
                f"base: use --method lora (or another adapter method), not {method!r}"
            )
    elif method != info.method:
        raise ConfigError(
            f"{where}: the run was trained with --method {info.method}; --continual "
            f"{c.continual} goes on training the same weights, so use --method {info.method}"
        )
    lineage = list(info.lineage or [first_stage(folder, info)])
    return Previous(folder, info, c.continual, lineage)


def first_stage(folder: Path, info: RunInfo) -> dict:
    """The lineage record of a run that did not itself continue another."""
    cfg = read_config(folder, required=False)
    files = {k: cfg.get(k) for k in ("train", "validation", "test")}
    return stage_record(1, folder, "initial", list(info.labels), fingerprint(files), folder)


def test_scores(run: Path) -> dict | None:
    """The test scores a finished run recorded (its summary metrics), or None."""
    test = read_metrics(run, required=False).get("test")
    return {k: test[k] for k in SUMMARY if k in test} if test else None


def stage_record(
    n: int, run: Path, strategy: str, labels: list[str], data: dict, scored: Path | None
) -> dict:
    data = {role: {**f, "path": str(Path(f["path"]).resolve())} for role, f in data.items()}
    return {
        "stage": n,
        "run": str(Path(run).resolve()),
        "strategy": strategy,
        "labels": labels,
        "data": data,
        "test_metrics": test_scores(scored) if scored is not None else None,
    }


def earlier_rows(prev: Previous, task: Task, last_only: bool = False) -> list[dict]:
    """Earlier training examples: the buffer the previous run keeps, else the stages' recorded
    training files that can still be read (``last_only``: the previous stage's)."""
    buffer = replay.read(prev.folder)
    if buffer is not None:
        last = prev.lineage[-1]["stage"]
        rows = [r for r in buffer if r["stage"] == last] if last_only else buffer
        if rows:
            return rows
    rows, missing = [], []
    for st in prev.lineage[-1:] if last_only else prev.lineage:
        path = (st.get("data") or {}).get("train", {}).get("path")
        if not path or not Path(path).is_file():
            missing.append(str(path))
            continue
        ex = task.read_examples(path, prev.info.text_column, prev.info.label_column)
        rows += [
            {"text": t, "label": y, "stage": st["stage"]}
            for t, y in zip(ex.texts, ex.labels, strict=True)
        ]
    if not rows:
        raise DataError(
            str(prev.folder),
            None,
            f"--continual {prev.strategy} needs earlier training data, but the run keeps no "
            f"replay buffer and its training file is gone ({', '.join(missing)})",
        )
    return rows


def add_replay(prev: Previous, train: Examples, n_own: int, cfg: C.RunConfig, task: Task) -> None:
    """Remember this stage's own examples (the first ``n_own``: not augmented copies); for
    ``replay``, append the earlier ones it mixes in (``replay_ratio`` per new example,
    class-balanced, drawn with the seed)."""
    stage = prev.lineage[-1]["stage"] + 1
    prev.new_rows = [
        {"text": t, "label": y, "stage": stage}
        for t, y in zip(train.texts[:n_own], train.labels[:n_own], strict=True)
    ]
    if prev.strategy != "replay":
        return
    c, t = cfg.continual, cfg.train
    room = max(1, round(c.replay_ratio * n_own))
    # a different block of earlier examples each epoch (supervised_job's rotate): as many
    # earlier examples seen as the buffer allows, at the cost of ``room`` per epoch
    prev.earlier = earlier_rows(prev, task)  # the buffer this run writes is drawn from them too
    pool = replay.balanced_sample(prev.earlier, room * math.ceil(t.epochs), t.seed)
    random.Random(t.seed).shuffle(pool)  # so that every block is about as balanced
    train.texts += [r["text"] for r in pool]
    train.labels += [r["label"] for r in pool]
    train.lines += [0] * len(pool)  # not lines of the training file
    prev.replayed, prev.per_epoch = len(pool), min(room, len(pool))


def rotation(p: Any) -> tuple[int, int] | None:
    """``supervised_job``'s ``rotate`` for a replay stage: this stage's rows every epoch, and
    a block of the replayed ones; None otherwise."""
    prev: Previous | None = p.previous
    if prev is None or not prev.replayed:
        return None
    return len(p.ids_train) - prev.replayed, prev.per_epoch


def weighting(prev: Previous | None, cfg: C.RunConfig) -> Any:
    """The loss settings: replay with ``replay_balance`` weights the labels (class weights
    ``auto`` over an epoch's mix), unless the run sets class weights itself."""
    r = cfg.regularisation
    if prev is None or prev.strategy != "replay" or not cfg.continual.replay_balance:
        return r
    return r if r.class_weights else dataclasses.replace(r, class_weights="auto")


def counted_labels(prev: Previous | None, labels: list, n_own: int) -> list:
    """The labels one epoch trains on, for class weights: this stage's (not augmented copies)
    and one block of the replayed ones."""
    if prev is None or not prev.replayed:
        return labels[:n_own]
    first = len(labels) - prev.replayed
    return labels[:n_own] + labels[first : first + prev.per_epoch]


def make_spec(prev: Previous, task: Task, train: Examples, options: dict) -> dict:
    """The target spec: a stage of lora-per-task has its own label set; the others keep the
    old labels in their order and append the new ones."""
    if prev.strategy == "lora-per-task":
        return task.make_spec(train, options)
    old = list(prev.info.labels)
    spec = {k: v for k, v in prev.info.spec.items() if k != "labels"}
    spec["labels"] = old + [y for y in label_names(train.labels) if y not in old]
    return spec


def previous_state(prev: Previous, task: Task, base_path: str) -> dict[str, torch.Tensor]:
    """The continued run's trained weights as its method loads them, in fp32."""
    from tunelab.methods import MethodContext, get_method

    spec = prev.info.spec
    files = prev.info.files or {}

    def build_from(path: str) -> torch.nn.Module:
        if Path(path).resolve() == prev.folder.resolve():
            return task.build_model(path, spec, files=files)
        return task.build_model(path, spec)

    method = get_method(prev.info.method)
    model = method.load(prev.folder, build_from, base_path, MethodContext(task, files=files))
    return {k: v.float() for k, v in model.state_dict().items()}


def warm_start(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy ``state`` into ``model``: every tensor of the same shape, and the rows of a head
    that grew by new labels (its new rows keep their fresh initialisation). Returns the grown
    tensors' names; a tensor missing from ``state`` or of another shape is an error."""
    grown = []
    with torch.no_grad():
        for name, t in model.state_dict().items():
            w = state.get(name)
            if w is None:
                raise TunelabError(f"cannot continue: the earlier run has no weight {name!r}")
            if w.shape == t.shape:
                t.copy_(w)
            elif w.shape[1:] == t.shape[1:] and w.shape[0] < t.shape[0]:
                t[: w.shape[0]].copy_(w)
                grown.append(name)
            else:
                raise TunelabError(
                    f"cannot continue: weight {name!r} is {tuple(w.shape)} in the earlier run "
                    f"and {tuple(t.shape)} now"
                )
    return grown


def start(p: Any, model: torch.nn.Module, pad: int) -> Any:
    """Before training: the earlier weights into ``model`` and, for EWC, the Fisher sum and
    the penalty (returned; None otherwise). ``p``: the run's Prepared."""
    import time

    from tunelab.data.batching import tokenize

    prev: Previous = p.previous
    if prev.strategy == "lora-per-task":
        return None
    grown = warm_start(model, previous_state(prev, p.task, p.source.path))
    if prev.strategy == "replay" and p.cfg.continual.replay_distill > 0 and prev.replayed:
        soft_targets(p, model, pad)
    if prev.strategy != "ewc":
        return None
    t0 = time.perf_counter()
    rows = earlier_rows(prev, p.task, last_only=True)
    index = {y: i for i, y in enumerate(p.spec["labels"])}
    ids = tokenize(p.tokenizer, [r["text"] for r in rows], p.cfg.model.max_length)
    c = p.cfg.continual
    now = ewc.fisher(
        model,
        ids,
        [index[r["label"]] for r in rows],
        pad,
        c.ewc_samples,
        p.cfg.train.seed,
        lambda logits, y: p.task.loss_fn(logits, y, p.spec),
    )
    for name, v in ewc.grow(ewc.load(prev.folder), now).items():
        now[name] += v
    for name in grown:  # the new labels' head rows: nothing earlier depends on them
        if name in now:
            now[name][len(prev.info.labels) :] = 0
    prev.fisher = now
    prev.fisher_seconds = time.perf_counter() - t0
    return ewc.penalty(model, now, c.ewc_lambda)


def soft_targets(p: Any, model: torch.nn.Module, pad: int) -> None:
    """Dark experience replay (Buzzega et al. 2020): each replayed example also learns to
    keep the earlier model's scores of the old labels. ``model`` holds the earlier weights
    (its old labels' scores are exactly the earlier run's); every training target becomes
    ``[label, weight, score_1 .. score_K]`` (weight 0 for this stage's own examples), which
    :func:`loss` reads."""
    from tunelab.data.batching import predict_logits

    prev: Previous = p.previous
    k = len(prev.info.labels)
    first = len(p.ids_train) - prev.replayed  # replayed rows come last (add_replay)
    model.eval()
    with torch.no_grad():
        scores = predict_logits(model, p.ids_train[first:], pad, 64)[:, :k]
    model.train()
    own = [0.0] * k
    p.y_train = [
        [float(y), 0.0, *own] if i < first else [float(y), 1.0, *map(float, scores[i - first])]
        for i, y in enumerate(p.y_train)
    ]
    prev.distilled = k


def loss(p: Any) -> Any:
    """The training loss: the task's; for dark experience replay plus
    ``replay_distill`` x the mean squared error to the earlier scores (see
    :func:`soft_targets`). None when the task's own loss applies."""
    prev: Previous | None = p.previous
    if prev is None or not prev.distilled:
        return None
    k, alpha, spec, task = prev.distilled, p.cfg.continual.replay_distill, p.spec, p.task

    def fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # targets: (batch, 2 + k) = label, weight, the earlier model's k old-label scores
        base = task.loss_fn(logits, targets[:, 0].long(), spec)
        w = targets[:, 1]
        err = ((logits[:, :k].float() - targets[:, 2:]) ** 2).mean(-1)
        return base + alpha * (w * err).sum() / w.numel()

    return fn


def details(p: Any) -> dict:
    """What the run's metrics record about the stage."""
    prev: Previous = p.previous
    c = p.cfg.continual
    out: dict = {"strategy": prev.strategy, "continued": str(prev.folder.resolve())}
    out["stage"] = prev.lineage[-1]["stage"] + 1
    if prev.strategy == "replay":
        out.update(
            replayed=prev.replayed,
            replayed_per_epoch=prev.per_epoch,
            replay_ratio=c.replay_ratio,
            replay_balance=c.replay_balance,
            replay_distill=c.replay_distill,
        )
    if prev.strategy == "ewc":
        out.update(
            ewc_lambda=c.ewc_lambda,
            ewc_samples=c.ewc_samples,
            fisher_seconds=round(prev.fisher_seconds, 2),
        )
    return out


def write(p: Any, out: Path, final: Path) -> list[dict]:
    """This stage's files in the run folder being written (``out``, which becomes ``final``);
    returns the lineage to record."""
    prev: Previous = p.previous
    c = p.cfg.continual
    if prev.strategy == "replay":
        buffer = replay.update(prev.earlier, prev.new_rows, c.replay_size, p.cfg.train.seed)
        replay.write(out, buffer)
    if prev.strategy == "ewc":
        ewc.save(out, prev.fisher)
    n = prev.lineage[-1]["stage"] + 1
    if prev.strategy == "lora-per-task":  # earlier stages' adapters travel with the run
        keep = shutil.ignore_patterns("tensorboard", "*.checkpoints", STAGES_DIR)
        for st in prev.lineage:
            src = Path(st["run"])
            nested = prev.folder / STAGES_DIR / str(st["stage"])
            src = src if src.is_dir() else nested
            shutil.copytree(src, out / STAGES_DIR / str(st["stage"]), ignore=keep)
    own = label_names([r["label"] for r in prev.new_rows])
    lineage = [dict(st) for st in prev.lineage]
    if lineage[-1].get("test_metrics") is None:  # scores it had when trained
        lineage[-1]["test_metrics"] = test_scores(prev.folder)
    # p.data: the data files' checksums, taken once when the run prepared
    lineage.append(stage_record(n, final, prev.strategy, own, p.data, None))
    return lineage
