"""The first steps of a run, before anything slow: check the settings, read and encode the data,
find the resume point. Every input is read and validated before the model loads, so bad data
fails in a second."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunelab import config as C
from tunelab.data_policy import reading_policy
from tunelab.errors import ConfigError, DataError
from tunelab.methods import Method, check_supported, get_method
from tunelab.models import resolve_model
from tunelab.models.hf import is_causal, quiet_transformers
from tunelab.models.registry import ResolvedModel
from tunelab.runs import (
    CONFIG_FILE,
    RUN_FILE,
    check_output_dir,
    checkpoints_dir,
    is_run,
    read_config,
)
from tunelab.tasks import LOWER_IS_BETTER, Task, get_task
from tunelab.tasks.encoding import as_targets, encode_split
from tunelab.training import checkpoint, continual, overfitting
from tunelab.training.distributed import Dist

# keys that may differ between an interrupted run and its resumption
RESUME_MAY_CHANGE = {
    "output_dir",
    "overwrite",
    "resume",
    "resume_from",
    "progress",
    "num_threads",
    "save_steps",
    "save_total_limit",
    "report_to",
}


@dataclass
class Prepared:
    """Everything known before the model is built: settings, data encoded once, the target
    spec, where to resume."""

    cfg: C.RunConfig
    task: Task
    method: Method
    dist: Dist
    source: ResolvedModel
    tokenizer: Any
    spec: dict
    text_column: str
    label_column: str
    metric: str
    ids_train: list[list[int]]
    y_train: list
    ids: dict[str, list[list[int]]] = field(default_factory=dict)  # validation[, test]
    targets: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0
    n_validation: int = 0
    augmented: list[dict] = field(default_factory=list)
    checkpoints: Path = Path()
    resume_from: Path | None = None
    data: dict[str, dict] = field(default_factory=dict)  # size and sha256 of each data file
    texts: dict[str, list] = field(default_factory=dict)  # validation[, test]: for the report
    previous: continual.Previous | None = None  # the run this one continues (--continue-from)

    @property
    def final_split(self) -> str:
        return "test" if "test" in self.ids else "validation"

    @property
    def greater_is_better(self) -> bool:
        return self.metric not in LOWER_IS_BETTER


def check_settings(cfg: C.RunConfig, dist: Dist) -> tuple[Task, Method]:
    """Everything about the settings that can be refused without reading a file."""
    C.validate(cfg)
    d, t = cfg.data, cfg.train
    task, method = get_task(d.task), get_method(cfg.method.method)
    check_supported(method, task)
    for key, value in (
        ("train", d.train),
        ("validation", d.validation),
        ("output_dir", t.output_dir),
    ):
        if not value:
            raise ConfigError(f"missing required key '{key}' (--{key.replace('_', '-')})")
    assert t.output_dir is not None  # refused just above when missing
    overfitting.check(task, cfg.regularisation, dist.world)
    check_output_dir(t.output_dir, t.overwrite)
    return task, method


def prepare(cfg: C.RunConfig, dist: Dist) -> Prepared:
    """Check the settings, find the resume point, read, subset, augment and encode the data."""
    task, method = check_settings(cfg, dist)
    d, t, r = cfg.data, cfg.train, cfg.regularisation
    quiet_transformers()
    source = resolve_model(cfg.model.model)
    prev = continual.previous(cfg, task, source)  # checked before any data is read
    # check_settings refused a missing train, validation or output_dir
    assert d.train is not None and d.validation is not None and t.output_dir is not None
    ckpt_dir = checkpoints_dir(t.output_dir)
    data = checkpoint.fingerprint(data_files(cfg))  # recorded in every checkpoint
    resume_from = find_resume_point(cfg, ckpt_dir, dist.is_main, data)
    text_col = d.text_column or task.default_columns[0]
    label_col = d.label_column or task.default_columns[1]
    with reading_policy(C.read_policy(cfg)):  # the run's length limit and missing values
        train = task.read_examples(d.train, text_col, label_col)
        splits = {"validation": task.read_examples(d.validation, text_col, label_col)}
        if d.test:
            splits["test"] = task.read_examples(d.test, text_col, label_col)
    if d.max_train_examples:
        train.keep(list(range(min(d.max_train_examples, len(train.texts)))))
    if d.max_train_examples_per_class:
        overfitting.per_class_subset(train, d.max_train_examples_per_class, t.seed, task)
    n_original = len(train.texts)
    augmented = overfitting.augment_train(train, r, t.seed) if r.augment else []
    metric = task.default_metric if t.metric_for_best == "auto" else t.metric_for_best
    if d.max_eval_examples:
        for ex in splits.values():
            ex.keep(list(range(min(d.max_eval_examples, len(ex.texts)))))

    # target spec, and every split encoded once (no tokenisation later)
    if prev is not None:  # this stage's examples, and for replay the earlier ones mixed in
        continual.add_replay(prev, train, n_original, cfg, task)
    options = {
        "regression_loss": t.regression_loss,
        "doc_stride": cfg.model.doc_stride,
        "max_new_tokens": cfg.model.max_new_tokens,
        "causal_model": is_causal(source.path),
    }
    if prev is None:
        spec = task.make_spec(train, options)
    else:  # the old label set, grown by the new labels
        spec = continual.make_spec(prev, task, train, options)
    # class weights count the file's examples and the replayed ones, not augmented copies
    counted = continual.counted_labels(prev, train.labels, n_original)
    spec.update(overfitting.loss_options(task, continual.weighting(prev, cfg), counted, spec))
    spec.update(method.spec)  # what the method's model reads (SetFit: mean pooling)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.path)
    L = cfg.model.max_length
    ids_train, y_train = encode_split(task, tokenizer, train, spec, L, label_col)
    p = Prepared(
        cfg,
        task,
        method,
        dist,
        source,
        tokenizer,
        spec,
        text_col,
        label_col,
        metric,
        ids_train,
        y_train,
        n_train=len(train.texts),
        n_validation=len(splits["validation"].texts),
        augmented=augmented,
        checkpoints=ckpt_dir,
        resume_from=resume_from,
        data=data,
        previous=prev,
    )
    for k, v in splits.items():
        p.ids[k], y = encode_split(task, tokenizer, v, spec, L, label_col)
        p.targets[k] = as_targets(task, y)
        p.texts[k] = v.texts
    check_metric(task, metric, p.ids["validation"], p.targets["validation"], spec)
    return p


def check_metric(task: Task, metric: str, ids: list, targets, spec: dict) -> None:
    """Fail before training, not after an epoch, if ``metric`` is not one the task reports."""
    if task.metric_names is not None:  # tasks that evaluate themselves list their metrics
        known = list(task.metric_names)
    else:
        assert task.compute_metrics is not None
        k = spec.get("num_outputs") or len(spec.get("labels", [])) or 1
        dummy = [np.zeros((len(x), k)) for x in ids] if task.per_token else np.zeros((len(ids), k))
        known = [
            name
            for name, v in task.compute_metrics(dummy, targets, spec).items()
            if isinstance(v, float) or v is None
        ]
    if metric not in known:
        raise ConfigError(
            f"key 'metric_for_best' = {metric!r} is not a {task.name} metric "
            f"(choose from {', '.join(known)})"
        )


def data_files(cfg: C.RunConfig) -> dict[str, str | None]:
    """Every data file the run reads, by its role."""
    d = cfg.data
    return {"train": d.train, "validation": d.validation, "test": d.test}


def _changed_key(before: dict, now: dict) -> str | None:
    """The first setting that matters and differs between ``before`` and ``now``."""
    return next(
        (k for k, v in before.items() if k not in RESUME_MAY_CHANGE and now.get(k) != v), None
    )


def find_resume_point(
    cfg: C.RunConfig, ckpt_dir: Path, is_main: bool = True, data: dict[str, dict] | None = None
) -> Path | None:
    """The checkpoint to continue from, or None for a fresh run; refuses to silently start
    over on top of an interrupted run's checkpoints, or to resume with different settings or
    data (``data``: the :func:`~tunelab.training.checkpoint.fingerprint` of the files now)."""
    t = cfg.train
    if t.resume_from:
        point = Path(t.resume_from)
        if not (point / checkpoint.DONE).is_file():
            raise ConfigError(f"{point}: not a complete tunelab checkpoint")
    else:
        found = checkpoint.complete(ckpt_dir)
        if not t.resume:
            if found and not t.overwrite:
                raise ConfigError(
                    f"{ckpt_dir} holds checkpoints of an interrupted run: add "
                    "--resume to continue it, or --overwrite to start over"
                )
            if is_main:  # only the main process writes (or deletes)
                shutil.rmtree(ckpt_dir, ignore_errors=True)
            return None
        if not found:
            raise ConfigError(f"nothing to resume: no checkpoint in {ckpt_dir}")
        point = found[-1]
    before = C.from_mapping(read_config(point, required=False), str(point / CONFIG_FILE))
    now = cfg.flat()
    if (k := _changed_key(before, now)) is not None:
        raise ConfigError(
            f"cannot resume {point}: key '{k}' was {before[k]!r} in the "
            f"interrupted run and is {now.get(k)!r} now"
        )
    check_data(
        point, data if data is not None else checkpoint.fingerprint(data_files(cfg)), is_main
    )
    return point


def check_data(point: Path, now: dict[str, dict], is_main: bool = True) -> None:
    """Refuse to resume from ``point`` when a data file differs from the one the interrupted
    run read (size, then sha256); a checkpoint from before data was recorded resumes with a
    warning."""
    recorded = checkpoint.read_data(point)
    if recorded is None:
        if is_main:
            print(
                f"tunelab: warning: {point} does not record its data files (written by an "
                "older tunelab); resuming without checking that they are unchanged",
                file=sys.stderr,
                flush=True,
            )
        return
    for role, was in recorded.items():
        cur = now.get(role)
        path = cur["path"] if cur else was.get("path", role)
        if cur is None:
            why = "cannot be read now"
        elif cur["size"] != was.get("size"):
            why = (
                f"changed since the checkpoint {point} ({was.get('size')} bytes, now {cur['size']})"
            )
        elif cur["sha256"] != was.get("sha256"):
            why = f"changed since the checkpoint {point} (same size, other contents)"
        else:
            continue
        raise DataError(
            path,
            None,
            f"the {role} file {why}; resuming would train on other data than the interrupted "
            "run did: restore the file, or start over with --overwrite instead of --resume",
        )


def finished_run(cfg: C.RunConfig) -> Path | None:
    """With ``--resume`` (and no ``--overwrite``): the finished run at ``output_dir`` when the
    same settings wrote it after the newest checkpoint, i.e. a run killed after its folder was
    complete but before its checkpoints were removed. None otherwise."""
    t = cfg.train
    if not t.resume or t.overwrite or not t.output_dir or not is_run(Path(t.output_dir)):
        return None
    out = Path(t.output_dir)
    before = C.from_mapping(read_config(out, required=False), str(out / CONFIG_FILE))
    if not before or _changed_key(before, cfg.flat()) is not None:
        return None
    written = (out / RUN_FILE).stat().st_mtime_ns
    ckpts = checkpoint.complete(checkpoints_dir(out))
    if any((p / checkpoint.DONE).stat().st_mtime_ns > written for p in ckpts):
        return None
    return out


# measured on a Xeon with oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2): MiniLM training at
# 1.5 examples/s in bf16 against 59 in fp32
EMULATED_BF16_SLOWDOWN = 40


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> what this device does well: on a CPU, bf16 where it is native (AMX or
    AVX-512 BF16), else fp32; on a GPU bf16 or fp16. fp16 needs a GPU; bf16 on a CPU without
    native bf16 runs, with a warning."""
    from tunelab import machine

    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("key 'precision' = 'fp16' needs a GPU; on a CPU use bf16 or fp32")
    if device.type == "cuda":
        if precision != "auto":
            return precision
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "auto":
        return "bf16" if machine.native_bf16() else "fp32"
    if precision == "bf16" and not machine.native_bf16():
        print(
            "tunelab: warning: this CPU has no native bf16 (no AMX or AVX-512 BF16), so bf16 "
            f"is emulated: about {EMULATED_BF16_SLOWDOWN}x slower than fp32 in our measurement; "
            "use --precision fp32 (or auto)",
            file=sys.stderr,
        )
    return precision
