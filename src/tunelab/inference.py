"""A loaded run folder that predicts: ``TunedModel`` and how a plain run or export loads.

``tunelab.load`` (in :mod:`tunelab.loading`) picks the loader by the folder's kind. Nothing here
imports training, evaluation reports or plotting: serving and the task functions stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np
import torch

from tunelab.data.batching import predict_logits, tokenize
from tunelab.errors import TunelabError
from tunelab.integrity import check_folder, read_checked
from tunelab.methods import MethodContext, get_method
from tunelab.models import resolve_model
from tunelab.models.hf import align_pad, pad_id, position_limit, quiet_transformers
from tunelab.runs import RunInfo
from tunelab.tasks import get_task
from tunelab.tasks.encoding import as_targets, encode_split
from tunelab.tasks.examples import Examples

if TYPE_CHECKING:
    from tunelab.backends import OnnxModule

# files a loader checks while it reads them into memory, not before
VERIFIED_WHILE_READ = ("model.safetensors", "model.onnx", "trained_weights.safetensors")


class TunedModel:
    """A fine-tuned model loaded from a run folder.

    Attributes:
        task: task name; labels: label names in index order; method: how it was trained;
        info: the run's ``tunelab.json``; backend: what runs it and in which precision.
    """

    def __init__(
        self,
        run_dir: Path,
        info: RunInfo,
        model: torch.nn.Module | OnnxModule | None,
        tokenizer,
        backend: str = "pytorch fp32 (cpu)",
    ) -> None:
        # model is None only for an EnsembleModel, which predicts through its members
        self.run_dir, self.info, self.model, self.tokenizer = run_dir, info, model, tokenizer
        self.task_name: str = info.task
        self.task = get_task(self.task_name)
        self.labels: list[str] = list(info.labels)
        # what the targets are: {"labels": [...]} or regression {"mean", "std", ...}
        self.spec: dict = dict(info.spec)
        self.method: str = info.method
        # never more tokens than the model has positions (a run trained with a longer
        # --max-length than its model holds would fail on a long text)
        limit = position_limit(model)
        self.max_length: int = min(info.max_length, limit) if limit else info.max_length
        self.pad_id = pad_id(tokenizer)
        self.backend = backend  # what runs it: "pytorch bf16 (cpu)", "onnxruntime int8", ...

    def __repr__(self) -> str:
        return (
            f"TunedModel({str(self.run_dir)!r}, task={self.task_name!r}, "
            f"method={self.method!r}, labels={self.labels}, backend={self.backend!r})"
        )

    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Raw scores, (len(texts), num_labels)."""
        ids = tokenize(self.tokenizer, texts, self.max_length)
        assert self.model is not None  # an EnsembleModel overrides logits
        return predict_logits(self.model, ids, self.pad_id, batch_size)

    @overload
    def predict(self, texts: str | dict, batch_size: int = 64) -> dict: ...
    @overload
    def predict(self, texts: list[str] | list[dict], batch_size: int = 64) -> list[dict]: ...
    def predict(
        self, texts: str | dict | list[str] | list[dict], batch_size: int = 64
    ) -> list[dict] | dict:
        """Predict for one text or a list of texts.

        Args:
            texts: one text or a list of texts; question answering takes
                ``{"question", "context"}`` dicts (or one dict).
        Returns:
            per text, text classification: ``{"label", "score", "probabilities": {label: p}}``;
            regression: ``{"value": number}``; multi-label: ``{"labels", "scores"}``; token
            classification: ``{"entities": [{"text", "type", "start", "end", "score"}]}``;
            question answering: ``{"answer", "start", "end", "score"}`` (character offsets in
            the context); generation: ``{"generated": text}``.
            A single dict when ``texts`` is a string.
        """
        single = isinstance(texts, (str, dict))
        batch: list = [texts] if single else list(texts)  # texts, or question-answering dicts
        if not batch:
            return []
        if self.task.predict_texts is not None:  # token tasks need offsets, not just logits
            out = self.task.predict_texts(self, batch, batch_size)
        else:
            assert self.task.decode is not None  # Task: one of decode and predict_texts
            out = self.task.decode(self.logits(batch, batch_size), self.spec)
        return out[0] if single else out

    def read_labelled(
        self, path: str, text_column: str | None = None, label_column: str | None = None
    ) -> tuple[Examples, str]:
        """A labelled file's examples (the training columns unless given) and the label
        column used."""
        lc = label_column or self.info.label_column
        return self.task.read_examples(path, text_column or self.info.text_column, lc), lc

    def evaluate(
        self,
        path: str,
        text_column: str | None = None,
        label_column: str | None = None,
        batch_size: int = 64,
    ) -> dict:
        """Metrics on a labelled file (same columns as training unless given)."""
        ex, lc = self.read_labelled(path, text_column, label_column)
        ids, y = encode_split(self.task, self.tokenizer, ex, self.spec, self.max_length, lc)
        if self.task.evaluate_split is not None:
            return self.task.evaluate_split(
                self.model, self.tokenizer, ids, y, self.spec, batch_size=batch_size, full=True
            )
        assert self.task.compute_metrics is not None
        assert self.model is not None  # an EnsembleModel overrides evaluate
        logits = predict_logits(
            self.model, ids, self.pad_id, batch_size, per_token=self.task.per_token
        )
        return self.task.compute_metrics(logits, as_targets(self.task, y), self.spec)


def load_run(
    run_dir: Path,
    info: RunInfo,
    device: str | None = None,
    precision: str = "auto",
    share_base: bool = True,
) -> TunedModel:
    """Load a training run or an export folder on the fastest backend it has.

    Args:
        run_dir: the folder; info: its ``tunelab.json``.
        device: torch device; default CPU (or CUDA when available). ONNX exports run on
            ONNX Runtime's CPU provider.
        precision: of PyTorch float weights (see :func:`inference_precision`).
        share_base: a base model's weights are shared with the other runs on it loaded in
            this process (adapter methods: LoRA, IA3, prompts, partial); off for a model
            that will be changed in place (merging for export).
    """
    from tunelab.models.weights import load_tokenizer

    quiet_transformers()
    export = info.export or {}
    check_files(run_dir, export)
    # every recorded file is checked; weights while they are read (never memory-mapped)
    check_folder(run_dir, info.files, deferred=VERIFIED_WHILE_READ)
    files = info.files or {}
    _set_threads()
    # one tokenizer for the runs on one base (same files, used alike: see load_tokenizer)
    use = (info.task, info.max_length, repr(info.spec.get("doc_stride")))
    tokenizer = load_tokenizer(run_dir, files if share_base else None, use)
    if export.get("format") == "onnx":
        from tunelab.backends import OnnxModule

        graph = run_dir / "model.onnx"
        onnx = OnnxModule(graph, read_checked(graph, files.get(graph.name)))
        kind = "int8" if export.get("quantize") == "int8" else "fp32"
        return TunedModel(run_dir, info, onnx, tokenizer, backend=f"onnxruntime {kind}")
    task = get_task(info.task)
    method = get_method(info.method)
    base_path = base_model_path(info)
    spec = info.spec
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    int8 = export.get("quantize") == "int8"  # an hf export quantized on load, from fp32
    dtype = "fp32" if int8 else inference_precision(precision, dev)

    def build_from(path: str) -> torch.nn.Module:
        # the run's own weights are checked against its record; a base model's are not,
        # and are shared with every other run on the same base in this process
        if Path(path).resolve() == run_dir.resolve():
            return task.build_model(path, spec, files=files)
        bf16 = torch.bfloat16 if dtype == "bf16" else None
        return task.build_model(path, spec, shared=share_base, dtype=bf16)

    model = method.load(run_dir, build_from, base_path, MethodContext(task, files=files))
    align_pad(model, tokenizer)
    model.eval()
    if int8:  # float weights on disk, int8 in memory
        from tunelab.backends import quantize_torch_int8

        quantized = quantize_torch_int8(model)
        return TunedModel(run_dir, info, quantized, tokenizer, backend="pytorch int8 (dynamic)")
    model.to(dev, dtype=torch.bfloat16 if dtype == "bf16" else None)
    return TunedModel(run_dir, info, model, tokenizer, backend=f"pytorch {dtype} ({dev.type})")


def base_model_path(info: RunInfo) -> str:
    """The folder of a run's base model; an alias is re-resolved (the weights package may
    live elsewhere on this machine)."""
    base = info.base_model or {}
    if base.get("kind") == "alias":
        return resolve_model(base["source"]).path
    return str(base.get("path", ""))


def inference_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 where the device computes it natively (a CPU with AMX or AVX-512
    BF16, a GPU that supports it), else fp32. bf16 weights halve the memory; on the AMX
    Xeon a gemma3-270m LoRA run scored 1,736 reviews in 40 s against 90 s in fp32
    (bench/decoder_speed.py)."""
    from tunelab import machine

    if precision not in ("auto", "fp32", "bf16"):
        raise TunelabError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and machine.native_bf16() else "fp32"


def check_files(folder: Path, export: dict) -> None:
    """A clear error naming the first missing file of an incomplete folder."""
    if export.get("format") == "onnx":
        need = ["model.onnx", "config.json", "tokenizer_config.json"]
    elif export:
        need = ["config.json", "model.safetensors", "tokenizer_config.json"]
    else:
        need = ["tokenizer_config.json"]
    for name in need:
        if not (folder / name).is_file():
            what = "export" if export else "run"
            again = "tunelab export" if export else "tunelab train"
            raise TunelabError(
                f"{folder}: incomplete {what} folder, {name} is missing "
                f"(re-create it with `{again}`)"
            )


def _set_threads() -> None:
    """One intra-op thread per core this process may use (a container's share, not the
    host's count, which oversubscribes and slows everything down)."""
    from tunelab.backends import cpu_threads

    if torch.get_num_threads() > cpu_threads():
        torch.set_num_threads(cpu_threads())
