"""From a RunConfig to a finished, self-describing run folder.

file -> validated examples -> token ids -> method-wrapped model -> loop -> run folder, as named
steps: :func:`~tunelab.training.prepare.prepare` (settings, data, resume point),
:func:`build` (model and method), :func:`train` (the loop), :func:`finalize` (thresholds, final
scores) and :func:`write_run_folder`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from tunelab import allocator, machine
from tunelab import config as C
from tunelab.backends import cpu_threads
from tunelab.data.batching import predict_logits
from tunelab.evaluation.report import write_report
from tunelab.methods import MethodContext, TrainingData, count_parameters
from tunelab.models.hf import align_pad, pad_id
from tunelab.runs import (
    RunInfo,
    checkpoints_dir,
    read_metrics,
    staged_dir,
    write_config,
    write_metrics,
    write_run,
)
from tunelab.tasks.generation import prompt_learning
from tunelab.training import (
    bf16_compute,
    checkpoint,
    continual,
    distributed,
    events,
    fast_attention,
    overfitting,
    packing,
)
from tunelab.training.callbacks import Checkpointing, Interruption, ProgressBar
from tunelab.training.loop import Callback, LoopResult, LoopSettings, fit, plan_steps
from tunelab.training.prepare import Prepared, finished_run, prepare, resolve_precision
from tunelab.training.supervised import (
    StepSettings,
    autocast,
    epoch_rows,
    run_stage,
    supervised_job,
)
from tunelab.version import __version__

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _silent(msg: str) -> None:
    pass


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (CPU), in MiB."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024


@dataclass
class Built:
    """The model as it trains, and how to score it."""

    model: torch.nn.Module
    trainable: int
    total: int
    learning_rate: float
    precision: str
    total_steps: int
    batching: str  # length-grouped | random | packed
    penalty: Callable[[], torch.Tensor] | None = None  # --continual ewc's loss term

    def logits(self, p: Prepared, split: str):
        """Logits of a split; across processes each predicts its share, then all gather."""
        with allocator.released():  # see tunelab.allocator: no heap growth while scoring
            return self._logits(p, split)

    def _logits(self, p: Prepared, split: str):
        dist = p.dist
        mine = distributed.shard(len(p.ids[split]), dist)
        with autocast(dist.device, self.precision):
            part = (
                predict_logits(
                    self.model,
                    [p.ids[split][i] for i in mine],
                    pad_id(p.tokenizer),
                    batch_size=max(64, p.cfg.train.batch_size),
                    per_token=p.task.per_token,
                )
                if mine
                else []
            )  # a split smaller than the number of processes
        if dist.world == 1:
            return part
        rows = distributed.unshard(dist.gather(list(part)), len(p.ids[split]))
        return rows if p.task.per_token else np.stack(rows)

    def evaluate(self, p: Prepared, split: str = "validation", full: bool = False) -> dict:
        with allocator.released():  # generation's growing KV cache: see tunelab.allocator
            return self._evaluate(p, split, full)

    def _evaluate(self, p: Prepared, split: str, full: bool) -> dict:
        if p.task.evaluate_split is not None:  # e.g. generation: no logits over the vocabulary
            with autocast(p.dist.device, self.precision):
                return p.task.evaluate_split(
                    self.model,
                    p.tokenizer,
                    p.ids[split],
                    p.targets[split],
                    p.spec,
                    batch_size=max(16, p.cfg.train.batch_size),
                    full=full,
                )
        assert p.task.compute_metrics is not None
        return p.task.compute_metrics(self.logits(p, split), p.targets[split], p.spec)


def build(p: Prepared) -> Built:
    """The pretrained model with the task head, wrapped by the method, on the device."""
    t, r = p.cfg.train, p.cfg.regularisation
    set_seed(t.seed)
    torch.set_num_threads(t.num_threads or max(1, cpu_threads() // p.dist.world))
    precision = resolve_precision(t.precision, p.dist.device)
    load_kwargs = overfitting.dropout_overrides(p.source.path, r)
    if p.dist.device.type == "cpu":
        allocator.retain_freed_memory()  # reuse freed pages: no page faults on every step
        # plain matmul attention: PyTorch's CPU flash-attention backward is slow in bf16 (44%
        # of a MiniLM step; 101 against 65 examples/s), as fast in fp32 (106 against 106),
        # and its attention dropout would bypass fast_dropout's masks, so fp32 and bf16 runs
        # would no longer draw the same masks from the same seed
        load_kwargs["attn_implementation"] = "eager"
    model = p.task.build_model(p.source.path, p.spec, **load_kwargs)
    align_pad(model, p.tokenizer)
    if precision == "bf16" and p.dist.device.type == "cpu":
        fast_attention.use(model)  # attention in tunelab's C kernels where the CPU has AVX-512
    if t.gradient_checkpointing:
        hf = cast("PreTrainedModel", model)  # the task's Transformers model
        if hasattr(hf, "activation_checkpointing_enable"):  # transformers >= 5.x name
            hf.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    n = epoch_rows(len(p.ids_train), continual.rotation(p))  # replay: a block per epoch
    _, total_steps = plan_steps(
        n, t.batch_size, t.gradient_accumulation_steps, p.dist.world, t.epochs
    )
    ctx = MethodContext(p.task, tuple(p.task.head_module_names(model)), total_steps)
    options = p.method.make_options(dataclasses.asdict(p.cfg.method))
    model = p.method.apply(model, options, ctx)
    model.to(p.dist.device)
    # --continue-from: the earlier run's weights (and EWC's anchor), before any cast to bf16
    penalty = continual.start(p, model, pad_id(p.tokenizer)) if p.previous else None
    if p.method.before_training is not None:  # a stage of the method's own (SetFit's)
        data = TrainingData(
            p.ids_train,
            p.y_train,
            pad_id(p.tokenizer),
            t.batch_size,
            precision,
            t.seed,
            _stderr,
            fit=run_stage,
        )
        p.method.before_training(model, options, data)
    elif precision == "bf16" and p.dist.device.type == "cpu":
        # (not after a method's own stage: the weights it tuned are saved, and stay fp32)
        bf16_compute.frozen_to_bf16(model)
    trainable, total = count_parameters(model)
    lr = t.learning_rate or p.method.default_learning_rate
    how = batching(model, p.cfg)
    return Built(model, trainable, total, lr, precision, total_steps, how, penalty)


def batching(model: torch.nn.Module, cfg: C.RunConfig) -> str:
    """How training batches are drawn and laid out: packed where the model allows it and
    ``packing`` is on (random batches at the cost of length-grouped ones), else
    ``group_by_length`` decides."""
    t = cfg.train
    if t.packing and packing.applies(model, adversarial=bool(cfg.regularisation.adversarial)):
        return "packed"
    return "length-grouped" if t.group_by_length else "random"


def train(
    p: Prepared, b: Built, log: Callable[[dict], None], callbacks: Sequence[Callback] = ()
) -> LoopResult:
    """The loop over the supervised job, with checkpoints, Ctrl-C and a progress bar."""
    t, r, m = p.cfg.train, p.cfg.regularisation, p.method
    steps = StepSettings(
        batch_size=t.batch_size,
        learning_rate=b.learning_rate,
        epochs=t.epochs,
        weight_decay=t.weight_decay,
        warmup_ratio=t.warmup_ratio,
        max_grad_norm=t.max_grad_norm,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler=t.lr_scheduler,
        precision=b.precision,
        seed=t.seed,
        batching=b.batching,
        rdrop_alpha=r.rdrop_alpha,
        rdrop_keep=(lambda tgt: tgt != -100) if p.task.per_token else None,
        # virtual tokens in front of the text shift the positions: all logits then
        response_logits_only=p.task.generative and not prompt_learning(b.model),
        adversarial=r.adversarial,
        adv_epsilon=r.adv_epsilon,
        adv_steps=r.adv_steps,
        adv_alpha=r.adv_alpha,
    )
    job = supervised_job(
        b.model,
        p.ids_train,
        p.y_train,
        pad_id(p.tokenizer),
        continual.loss(p) or (lambda logits, targets: p.task.loss_fn(logits, targets, p.spec)),
        steps,
        p.task.collate_targets,
        after_step=m.after_step and partial(m.after_step, b.model),
        regularizer=_sum(m.regularizer and partial(m.regularizer, b.model), b.penalty),
        loss_units=p.task.loss_units,
        dist=p.dist,
        rotate=continual.rotation(p),
    )
    settings = LoopSettings(
        epochs=t.epochs,
        metric=p.metric,
        greater_is_better=p.greater_is_better,
        eval_steps=t.eval_steps,
        patience=t.early_stopping_patience,
        log_every=t.log_steps,
        resume_from=p.resume_from,
    )
    saver = Checkpointing(
        p.checkpoints if p.dist.is_main else None,
        t.save_steps or None,
        t.save_total_limit,
        C.to_yaml(p.cfg),
        p.data,
    )
    bar = [ProgressBar()] if t.progress and sys.stderr.isatty() else []
    return fit(
        job,
        settings,
        partial(b.evaluate, p),
        log,
        [saver, *callbacks, Interruption(saver, p.dist), *bar],
    )


def _sum(*terms: Callable[[], torch.Tensor] | None) -> Callable[[], torch.Tensor] | None:
    """The loss terms added to the task loss (a method's, continual EWC's), as one."""
    given = [t for t in terms if t is not None]
    if len(given) <= 1:
        return given[0] if given else None
    return lambda: sum((t() for t in given), torch.zeros(()))


def finalize(p: Prepared, b: Built, res: LoopResult, before: dict | None) -> tuple[dict, object]:
    """The method's last word, thresholds tuned on validation, the final scores; returns
    (metrics, logits of the final split for the report's figures)."""
    if p.method.finalize:  # e.g. AdaLoRA: re-mask ranks after the best weights are restored
        p.method.finalize(b.model)
    if p.task.tune_thresholds is not None:  # calibrate on validation, then score test
        p.spec = p.task.tune_thresholds(b.logits(p, "validation"), p.targets["validation"], p.spec)
    final = p.final_split
    final_logits = None if p.task.evaluate_split is not None else b.logits(p, final)
    # generation scores only the final split by generating (slow); validation keeps its loss
    metrics: dict = {"validation": b.evaluate(p, "validation", full=final == "validation")}
    if "test" in p.ids:
        metrics["test"] = b.evaluate(p, "test", full=True)
    if before is not None:
        metrics["before_training"] = {final: before}
    metrics["training"] = {
        "steps": res.steps,
        "best_step": res.best_step,
        "best_epoch": round(res.best_epoch, 4),
        "stopped_early": res.stopped_early,
        "train_seconds": res.train_seconds,
        "examples_seen": res.examples_seen,
        "examples_per_s": res.examples_seen / max(res.train_seconds, 1e-9),
        "metric_for_best": p.metric,
        f"best_validation_{p.metric}": res.best_metric,
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }
    if p.previous is not None:
        metrics["continual"] = continual.details(p)
    return metrics, final_logits


def write_run_folder(
    p: Prepared, b: Built, res: LoopResult, metrics: dict, final_logits, out: Path
) -> None:
    """Weights, tokenizer, settings, scores, report; ``tunelab.json`` last. Written inside
    ``staged_dir``, which turns a failed write from any library into one line."""
    p.method.save(b.model, out)
    p.tokenizer.save_pretrained(out)
    write_config(out, C.to_yaml(p.cfg))
    src = p.source
    info = RunInfo(
        task=p.task.name,
        method=p.method.name,
        tunelab_version=__version__,
        base_model={"source": src.source, "path": src.path, "kind": src.kind},
        labels=p.spec.get("labels", []),
        target=p.spec,
        text_column=p.text_column,
        label_column=p.label_column,
        max_length=p.cfg.model.max_length,
        parameters={"trainable": b.trainable, "total": b.total},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__,
        method_details=p.method.describe(b.model) if p.method.describe else None,
        regularisation=overfitting.summary(p.cfg.regularisation) or None,
        precision=b.precision,
        machine=machine.describe(),
        batching=b.batching,
    )
    if p.previous is not None:  # buffer, Fisher sum or earlier adapters; the lineage
        info.lineage = continual.write(p, out, Path(p.cfg.train.output_dir or out))
    if p.augmented:  # for inspection: what the model was trained on besides the file
        overfitting.write_augmented(p.augmented, out / "augmented_train.csv")
    write_metrics(out, metrics)
    final = p.final_split
    write_report(
        out,
        info,
        metrics,
        res.history,
        p.metric,
        p.task,
        (final, final_logits, p.targets[final], p.spec, p.texts.get(final, [])),
    )
    write_run(out, info)  # last: marks the folder complete


def run_training(
    cfg: C.RunConfig,
    echo: Callable[[str], None] = _stderr,
    on_eval: Callable[[dict], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[Path, dict]:
    """Train, evaluate and write the run folder described by ``cfg``.

    ``on_eval`` receives every validation event (e.g. a hyper-parameter search prunes bad
    trials from it by raising); an exception there abandons the run and writes nothing.
    ``callbacks`` run in the loop after checkpointing and before Ctrl-C handling.

    Returns:
        (run folder, metrics dict as written to metrics.json)
    """
    dist = distributed.setup()
    echo = echo if dist.is_main else _silent
    cfg.train.num_processes = dist.world  # the run records how it was trained
    done = finished_run(cfg)
    if done is not None:  # killed after its folder was complete: only the checkpoints are left
        echo(f"tunelab: {done} is already finished; nothing to resume")
        if dist.is_main:
            checkpoint.remove_all(checkpoints_dir(done))
        return done, read_metrics(done)
    p = prepare(cfg, dist)
    b = build(p)
    events.announce(p, b, echo)
    before = None
    if p.task.baseline_before_training:  # e.g. ROUGE-L of the base model
        echo(f"tunelab: scoring the model before fine-tuning on the {p.final_split} split")
        before = b.evaluate(p, p.final_split, full=True)
    assert cfg.train.output_dir is not None  # prepare() refuses a run without one
    out = Path(cfg.train.output_dir)
    # only the main process writes: the others train and evaluate alongside it
    with (
        staged_dir(out, cfg.train.overwrite)
        if dist.is_main
        else contextlib.nullcontext(None) as tmp
    ):
        with events.event_log(p, b, tmp, echo, on_eval) as log:
            if p.resume_from is not None:
                echo(f"tunelab: resuming from {p.resume_from}")
            res = train(p, b, log, callbacks)
        metrics, final_logits = finalize(p, b, res, before)
        if tmp is not None:
            write_run_folder(p, b, res, metrics, final_logits, tmp)
    if dist.is_main:  # the finished run supersedes its checkpoints
        checkpoint.remove_all(p.checkpoints)
    return out, metrics
