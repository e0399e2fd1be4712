"""From a RunConfig to a finished, self-describing run folder.

file -> validated examples -> token ids -> method-wrapped model -> loop -> run folder.
Every input is read and validated before the model loads, so bad data fails in a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from functools import partial
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import tunelab
from tunelab import config as C
from tunelab.data.batching import predict_logits, tokenize
from tunelab.errors import ConfigError
from tunelab.evaluation.report import write_report
from tunelab.methods import count_parameters, get_method
from tunelab.models import resolve_model
from tunelab.runs import FORMAT_VERSION, RUN_FILE, check_output_dir, staged_dir, write_json
from tunelab.tasks import LOWER_IS_BETTER, get_task
from tunelab.training import checkpoint, distributed, overfitting
from tunelab.training.loop import LoopSettings, count_examples, fit, plan_steps
from tunelab.training.trackers import make_tracker


def quiet_transformers() -> None:
    """Hide load-time chatter (progress bars, 'newly initialized head' notices)."""
    import warnings

    import transformers

    # PEFT 0.21 calls an API that transformers 5 deprecates; nothing a user can act on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    # PEFT's prefix tuning still passes past_key_values, which transformers 5 renamed
    warnings.filterwarnings("ignore", message=".*`past_key_values` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*Both `past_key_values` and `cache` are set.*")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def set_seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity, unlike cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def method_options(cfg: C.RunConfig, total_steps: int) -> dict:
    """Plain keyword options for the method's ``apply`` (configs stay out of the methods)."""
    import dataclasses

    options = {k: v for k, v in dataclasses.asdict(cfg.method).items() if k != "method"}
    return {**options, "total_steps": total_steps}


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (CPU), in MiB."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024


def _silent(msg: str) -> None:
    pass


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def align_pad(model: torch.nn.Module, tokenizer) -> None:
    """Decoder models often ship without a pad token; sequence heads need one to find the
    last real token. Use the end-of-sequence token, as the Transformers docs suggest."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id


def encode_split(task, tokenizer, ex, spec: dict, max_length: int, label_col: str):
    """(token ids, targets) for one split; token tasks align labels to sub-words themselves."""
    if hasattr(task, "encode"):
        return task.encode(tokenizer, ex, spec, max_length, label_col)
    return tokenize(tokenizer, ex.texts, max_length), task.encode_targets(ex, spec, label_col)


def check_metric(task, metric: str, task_name: str, ids: list, targets, spec: dict,
                 per_token: bool) -> None:
    """Fail before training, not after an epoch, if ``metric`` is not one the task reports."""
    if hasattr(task, "METRIC_NAMES"):  # tasks that evaluate themselves list their metrics
        known = list(task.METRIC_NAMES)
    else:
        k = spec.get("num_outputs") or len(spec.get("labels", [])) or 1
        dummy = [np.zeros((len(x), k)) for x in ids] if per_token else np.zeros((len(ids), k))
        known = [name for name, v in task.compute_metrics(dummy, targets, spec).items()
                 if isinstance(v, float) or v is None]
    if metric not in known:
        raise ConfigError(f"key 'metric_for_best' = {metric!r} is not a {task_name} metric "
                          f"(choose from {', '.join(known)})")


def is_causal(path: str) -> bool:
    """Whether the model is a decoder-only LM (its checkpoint is a ...ForCausalLM)."""
    from transformers import AutoConfig

    arch = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    return any(a.endswith("ForCausalLM") for a in arch)


# keys that may differ between an interrupted run and its resumption
RESUME_MAY_CHANGE = {"output_dir", "overwrite", "resume", "resume_from", "progress",
                     "num_threads", "save_steps", "save_total_limit", "report_to"}


def find_resume_point(cfg: C.RunConfig, ckpt_dir: Path, is_main: bool = True) -> Path | None:
    """The checkpoint to continue from, or None for a fresh run; refuses to silently start
    over on top of an interrupted run's checkpoints, or to resume with different settings."""
    t = cfg.train
    if t.resume_from:
        point = Path(t.resume_from)
        if not (point / checkpoint.DONE).is_file():
            raise ConfigError(f"{point}: not a complete tunelab checkpoint")
    else:
        found = checkpoint.complete(ckpt_dir)
        if not t.resume:
            if found and not t.overwrite:
                raise ConfigError(f"{ckpt_dir} holds checkpoints of an interrupted run: add "
                                  "--resume to continue it, or --overwrite to start over")
            if is_main:  # only the main process writes (or deletes)
                shutil.rmtree(ckpt_dir, ignore_errors=True)
            return None
        if not found:
            raise ConfigError(f"nothing to resume: no checkpoint in {ckpt_dir}")
        point = found[-1]
    saved = point / "config.yaml"
    if saved.is_file() and saved.stat().st_size:
        before = C.load_yaml(saved)
        now = cfg.flat()
        for k, v in before.items():
            if k not in RESUME_MAY_CHANGE and now.get(k) != v:
                raise ConfigError(f"cannot resume {point}: key '{k}' was {v!r} in the "
                                  f"interrupted run and is {now.get(k)!r} now")
    return point


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> what this device does well; fp16 needs a GPU."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("key 'precision' = 'fp16' needs a GPU; on a CPU use bf16 or fp32")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def keep_first(ex, n: int) -> None:
    """Keep the first ``n`` examples of a split, in place."""
    ex.texts, ex.labels, ex.lines = ex.texts[:n], ex.labels[:n], ex.lines[:n]


def run_training(cfg: C.RunConfig, echo: Callable[[str], None] = _stderr,
                 on_eval: Callable[[dict], None] | None = None) -> tuple[Path, dict]:
    """Train, evaluate and write the run folder described by ``cfg``.

    ``on_eval`` receives every validation event (e.g. a hyper-parameter search prunes bad
    trials from it by raising); an exception there abandons the run and writes nothing.

    Returns:
        (run folder, metrics dict as written to metrics.json)
    """
    C.validate(cfg)
    d, t, r = cfg.data, cfg.train, cfg.regularisation
    dist = distributed.setup()
    if not dist.is_main:
        echo = _silent
    t.num_processes = dist.world  # the run records how it was trained
    task = get_task(d.task)
    method = get_method(cfg.method.method)
    if d.task not in method.tasks:
        raise ConfigError(f"method '{method.name}' does not support task '{d.task}'")
    for key, value in (("train", d.train), ("validation", d.validation),
                       ("output_dir", t.output_dir)):
        if not value:
            raise ConfigError(f"missing required key '{key}' (--{key.replace('_', '-')})")
    overfitting.check(d.task, r, dist.world)
    check_output_dir(t.output_dir, t.overwrite)
    ckpt_dir = checkpoint.checkpoints_dir(t.output_dir)
    resume_from = find_resume_point(cfg, ckpt_dir, dist.is_main)

    # 1. data, validated before anything slow happens
    cols = getattr(task, "DEFAULT_COLUMNS", ("text", "label"))
    text_col, label_col = d.text_column or cols[0], d.label_column or cols[1]
    train = task.read_examples(d.train, text_col, label_col)
    if d.max_train_examples:
        keep_first(train, d.max_train_examples)
    if d.max_train_examples_per_class:
        overfitting.per_class_subset(train, d.max_train_examples_per_class, t.seed, d.task)
    n_original = len(train.texts)
    augmented = overfitting.augment_train(train, r, t.seed) if r.augment else []
    metric = task.DEFAULT_METRIC if t.metric_for_best == "auto" else t.metric_for_best
    splits = {"validation": task.read_examples(d.validation, text_col, label_col)}
    if d.test:
        splits["test"] = task.read_examples(d.test, text_col, label_col)
    if d.max_eval_examples:
        for ex in splits.values():
            keep_first(ex, d.max_eval_examples)

    # 2. model location, target spec, and every split encoded once (no tokenisation later)
    quiet_transformers()
    source = resolve_model(cfg.model.model)
    spec = task.make_spec(train, {"regression_loss": t.regression_loss,
                                  "doc_stride": cfg.model.doc_stride,
                                  "max_new_tokens": cfg.model.max_new_tokens,
                                  "causal_model": is_causal(source.path)})
    spec.update(overfitting.loss_options(d.task, r, train.labels[:n_original], spec))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.path)
    L = cfg.model.max_length
    ids_train, y_train = encode_split(task, tokenizer, train, spec, L, label_col)
    ids, y = {}, {}
    for k, v in splits.items():
        ids[k], y[k] = encode_split(task, tokenizer, v, spec, L, label_col)
    per_token = getattr(task, "PER_TOKEN", False)
    targets = (lambda k: y[k]) if per_token else (lambda k: np.array(y[k]))
    check_metric(task, metric, d.task, ids["validation"], targets("validation"), spec, per_token)

    # 3. model
    set_seed(t.seed)
    torch.set_num_threads(t.num_threads or max(1, available_cores() // dist.world))
    model = task.build_model(source.path, spec, **overfitting.dropout_overrides(source.path, r))
    align_pad(model, tokenizer)
    precision = resolve_precision(t.precision, dist.device)
    if t.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
    head = task.head_module_names(model)
    _, total_steps = plan_steps(len(ids_train), t.batch_size, t.gradient_accumulation_steps,
                                dist.world, t.epochs)
    model = method.apply(model, method_options(cfg, total_steps), head, task.PEFT_TASK_TYPE)
    model.to(dist.device)
    trainable, total = count_parameters(model)
    lr = t.learning_rate or method.default_learning_rate
    echo(f"tunelab: {d.task} | {source.source} | method {method.name} | "
         f"{trainable:,} of {total:,} parameters train | lr {lr:g} | {precision} | "
         f"{len(train.texts)} train / {len(splits['validation'].texts)} validation examples"
         + (f" ({len(augmented)} of the train examples augmented)" if augmented else ""))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def split_logits(split: str):
        """Logits of a split; across processes each predicts its share, then all gather."""
        mine = distributed.shard(len(ids[split]), dist)
        part = predict_logits(model, [ids[split][i] for i in mine], pad,
                              batch_size=max(64, t.batch_size), per_token=per_token) \
            if mine else []  # a split smaller than the number of processes
        if dist.world == 1:
            return part
        rows = distributed.unshard(dist.gather(list(part)), len(ids[split]))
        return rows if per_token else np.stack(rows)

    def evaluate(split: str = "validation", full: bool = False) -> dict:
        if hasattr(task, "evaluate_split"):  # e.g. generation: no logits over the vocabulary
            return task.evaluate_split(model, tokenizer, ids[split], targets(split), spec,
                                       batch_size=max(16, t.batch_size), full=full)
        return task.compute_metrics(split_logits(split), targets(split), spec)

    final = "test" if "test" in splits else "validation"
    before = None
    if getattr(task, "BASELINE_BEFORE_TRAINING", False):  # e.g. ROUGE-L of the base model
        echo(f"tunelab: scoring the model before fine-tuning on the {final} split")
        before = evaluate(final, full=True)

    # only the main process writes: the others train and evaluate alongside it
    with staged_dir(t.output_dir, t.overwrite) if dist.is_main else \
            contextlib.nullcontext(None) as tmp:
        log_file = open(tmp / "train_log.jsonl", "w", encoding="utf-8") if tmp else \
            open(os.devnull, "w")
        tracker = make_tracker(t.report_to, tmp, Path(t.output_dir), cfg.flat()) if tmp \
            else None

        bar = t.progress and sys.stderr.isatty()
        # without a terminal (CI logs, nohup) print a plain line about every 10% instead
        every = max(10, 10 * round(total_steps / 100))

        def log(event: dict) -> None:
            replayed = event.pop("replayed", False)  # history of a resumed run: file only
            log_file.write(json.dumps(event) + "\n")
            log_file.flush()
            if tracker is not None:
                tracker.log(event)
            if replayed:
                return
            if event["type"] == "train" and t.progress and not bar and event["step"] % every == 0:
                echo(f"  step {event['step']} epoch {event['epoch']:.2f}: loss "
                     f"{event['loss']:.4f}, {event['examples_per_s']:.1f} examples/s")
            if event["type"] == "eval":
                if on_eval is not None:
                    on_eval(event)
                shown = ", ".join(f"{k} {event[k]:.4f}" for k in task.SUMMARY_METRICS
                                  if isinstance(event.get(k), float))
                echo(f"  epoch {event['epoch']:.2f} step {event['step']}: validation {shown}")

        settings = LoopSettings(
            epochs=t.epochs, batch_size=t.batch_size, learning_rate=lr,
            weight_decay=t.weight_decay, warmup_ratio=t.warmup_ratio,
            max_grad_norm=t.max_grad_norm, eval_steps=t.eval_steps,
            patience=t.early_stopping_patience, metric=metric, seed=t.seed,
            greater_is_better=metric not in LOWER_IS_BETTER, progress=bar,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            lr_scheduler=t.lr_scheduler, precision=precision, save_steps=t.save_steps or None,
            save_total_limit=t.save_total_limit,
            checkpoint_dir=ckpt_dir if dist.is_main else None,
            checkpoint_config=C.to_yaml(cfg), resume_from=resume_from,
            rdrop_alpha=r.rdrop_alpha, adversarial=r.adversarial, adv_epsilon=r.adv_epsilon,
            adv_steps=r.adv_steps, adv_alpha=r.adv_alpha,
            rdrop_keep=(lambda tgt: tgt != -100) if per_token else None)
        if resume_from is not None:
            echo(f"tunelab: resuming from {resume_from}")
        try:
            res = fit(model, ids_train, y_train, pad, partial(task.loss_fn, spec=spec), evaluate,
                      settings, log, getattr(task, "collate_targets", torch.tensor),
                      after_step=method.after_step and partial(method.after_step, model),
                      regularizer=method.regularizer and partial(method.regularizer, model),
                      loss_units=getattr(task, "loss_units", count_examples), dist=dist)
        finally:
            log_file.close()
            if tracker is not None:
                tracker.close()
        if method.finalize:  # e.g. AdaLoRA: re-mask ranks after the best weights are restored
            method.finalize(model)

        if hasattr(task, "tune_thresholds"):  # calibrate on validation, then score test
            spec = task.tune_thresholds(split_logits("validation"), targets("validation"), spec)
        final_logits = None if hasattr(task, "evaluate_split") else split_logits(final)
        # generation scores only the final split by generating (slow); validation keeps its loss
        metrics: dict = {"validation": evaluate("validation", full=final == "validation")}
        if "test" in splits:
            metrics["test"] = evaluate("test", full=True)
        if before is not None:
            metrics["before_training"] = {final: before}
        metrics["training"] = {
            "steps": res.steps, "best_step": res.best_step, "best_epoch": round(res.best_epoch, 4),
            "stopped_early": res.stopped_early, "train_seconds": res.train_seconds,
            "examples_seen": res.examples_seen,
            "examples_per_s": res.examples_seen / max(res.train_seconds, 1e-9),
            "metric_for_best": metric, f"best_validation_{metric}": res.best_metric,
            "peak_memory_mb": round(peak_memory_mb(), 1),
        }
        if tmp is None:
            return Path(t.output_dir), metrics
        method.save(model, tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "config.yaml").write_text(C.to_yaml(cfg), encoding="utf-8")
        info = {
            "format_version": FORMAT_VERSION, "tunelab_version": tunelab.__version__,
            "task": d.task, "method": method.name,
            "base_model": {"source": source.source, "path": source.path, "kind": source.kind},
            "labels": spec.get("labels", []), "target": spec,
            "text_column": text_col, "label_column": label_col,
            "max_length": L, "parameters": {"trainable": trainable, "total": total},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
        }
        if method.describe:
            info["method_details"] = method.describe(model)
        if regularisation := overfitting.summary(r):
            info["regularisation"] = regularisation
        if augmented:  # for inspection: what the model was trained on besides the file
            overfitting.write_augmented(augmented, tmp / "augmented_train.csv")
        write_json(tmp / "metrics.json", metrics)
        write_report(tmp, info, metrics, res.history, metric, task,
                     (final, final_logits, targets(final), spec))
        write_json(tmp / RUN_FILE, info)  # last: marks the folder complete
    if dist.is_main:  # the finished run supersedes its checkpoints
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return Path(t.output_dir), metrics
