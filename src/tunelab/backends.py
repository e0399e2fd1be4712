"""Inference backends behind ``tunelab.load``: PyTorch (run folders, ``hf`` exports) and ONNX
Runtime (``onnx`` exports).

``OnnxModule`` answers like a Transformers model (``model(input_ids=..., attention_mask=...)``
returns an object with ``.logits``, or ``.start_logits``/``.end_logits`` for span heads), so
every task's prediction and evaluation code runs unchanged on either backend.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from tunelab.errors import TunelabError, first_line


def cpu_threads() -> int:
    """Cores this process may run on (the container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


class OnnxModule:
    """An ONNX Runtime session with the calling convention of a Transformers model."""

    training = False
    device = torch.device("cpu")

    def __init__(
        self, path: str | Path, data: bytes | None = None, threads: int | None = None
    ) -> None:
        """``data``: the graph already read (and checked) by the caller; else read ``path``."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise TunelabError(
                f"{path}: ONNX exports need onnxruntime (pip install onnxruntime)"
            ) from None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or cpu_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                data if data is not None else str(path), so, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            first = first_line(e, 200)
            raise TunelabError(f"{path}: corrupt or unreadable ONNX model ({first})") from None
        self.path = Path(path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def eval(self) -> OnnxModule:
        return self

    def train(self, mode: bool = True) -> OnnxModule:
        return self

    def to(self, *args, **kwargs) -> OnnxModule:
        return self

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object
    ) -> SimpleNamespace:
        ids = input_ids.cpu().numpy()
        feeds = {"input_ids": ids, "attention_mask": attention_mask.cpu().numpy()}
        if "token_type_ids" in self.input_names:  # graphs traced with one segment
            feeds["token_type_ids"] = np.zeros_like(ids)
        outs = self.session.run(None, {k: feeds[k] for k in self.input_names})
        return SimpleNamespace(
            **{n: torch.from_numpy(o) for n, o in zip(self.output_names, outs, strict=True)}
        )


def model_device(model) -> torch.device:
    """The device a model's inputs go to (ONNX sessions and torch modules alike)."""
    dev = getattr(model, "device", None)
    return dev if isinstance(dev, torch.device) else next(model.parameters()).device


def quantize_torch_int8(model: torch.nn.Module) -> torch.nn.Module:
    """PyTorch dynamic int8 quantization of every Linear layer (weights int8, activations
    quantized per batch at run time). Deterministic: the same float weights always give the
    same int8 model, so an ``hf`` export stores float weights and quantizes on load."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks its quantized tensors as deprecated
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
