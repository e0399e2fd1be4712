"""Several run folders loaded in one process, a request naming the one it wants: many
adapters on one base (the multi-LoRA serving of LoRAX and vLLM), without switching anything.

``tunelab.load({"support": RUN_A, "billing": RUN_B})`` loads each run with ``tunelab.load``:
runs on the same base model share its weights (:class:`tunelab.models.weights.SharedWeights`)
and, where their tokenizer files are the same, one tokenizer; what each run trained (its LoRA
matrices, its head) is its own. Every run keeps its own module tree around the shared tensors,
so there is no active adapter to switch: PEFT's ``set_adapter`` changes modules that every
request goes through, and two concurrent requests for different adapters could see each
other's; here a request for ``billing`` runs billing's modules whatever else runs at the same
time (a concurrency test proves it). ``tunelab serve --model a=RUN_A --model b=RUN_B`` is the
same over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


class ModelSet(Mapping):
    """Loaded models by name; ``predict(texts, adapter=name)`` runs the named one."""

    def __init__(self, models: dict[str, Any]) -> None:
        if not models:
            raise ValueError("a model set needs at least one run")
        self.models = dict(models)

    def __getitem__(self, name: str) -> Any:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(
                f"no model named {name!r} in this set (it has {', '.join(self.models)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"ModelSet({', '.join(f'{k}={v.run_dir}' for k, v in self.models.items())})"

    def predict(self, texts, adapter: str, batch_size: int = 64):
        """``self[adapter].predict(texts)``: the named run's predictions."""
        return self[adapter].predict(texts, batch_size=batch_size)

    def logits(self, texts: list[str], adapter: str, batch_size: int = 64) -> np.ndarray:
        return self[adapter].logits(texts, batch_size=batch_size)

    def shared_groups(self) -> list[list[str]]:
        """Names whose models hold the same base weights in memory (one group per copy)."""
        groups: dict[int, list[str]] = {}
        for name, m in self.models.items():
            groups.setdefault(_base_key(m), []).append(name)
        return list(groups.values())


def _base_key(model: Any) -> int:
    """The address of the largest frozen tensor: the same for models sharing a base."""
    module = getattr(model, "model", None)
    params = (
        list(module.parameters()) if module is not None and hasattr(module, "parameters") else []
    )
    frozen = [p for p in params if not p.requires_grad] or params
    if not frozen:
        return id(model)
    return max(frozen, key=lambda p: p.numel()).data_ptr()
