"""``tunelab.load``: any model folder tunelab writes, loaded by the loader of its kind.

A folder's kind comes from its ``tunelab.json`` (:class:`tunelab.runs.RunInfo`): ``run`` for
training runs and exports, ``ensemble`` for ``tunelab ensemble``. A system that writes a new
kind of model folder registers its loader here in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError, first_line
from tunelab.runs import RunInfo, read_run

Loader = Callable[[Path, RunInfo, "str | None", str], Any]
LOADERS: dict[str, Loader] = {}


def register_loader(kind: str, loader: Loader) -> None:
    """Load folders of ``kind`` with ``loader(folder, info, device, precision)``; one loader
    per kind."""
    if kind in LOADERS:
        raise ValueError(f"a loader for {kind!r} folders is already registered")
    LOADERS[kind] = loader


def _run(folder: Path, info: RunInfo, device: str | None, precision: str):
    from tunelab.inference import load_run

    return load_run(folder, info, device, precision)


def _ensemble(folder: Path, info: RunInfo, device: str | None, precision: str):
    from tunelab.ensemble import load_ensemble

    return load_ensemble(folder, info, device, precision)


register_loader("run", _run)
register_loader("ensemble", _ensemble)


def load(
    path: str | os.PathLike | Mapping[str, str | os.PathLike],
    device: str | None = None,
    precision: str = "auto",
):
    """Load a run, export or ensemble folder for prediction, on the fastest backend it has
    (the model's ``backend`` says which); or several, by name.

    Args:
        path: a folder written by ``tunelab train``, ``tunelab export`` or ``tunelab ensemble``;
            or a mapping of names to such folders, loaded into one
            :class:`tunelab.model_set.ModelSet` (``predict(texts, adapter=name)``), where runs
            on one base share its weights and tokenizer.
        device: torch device; default CPU (or CUDA when available). ONNX exports run on
            ONNX Runtime's CPU provider.
        precision: for PyTorch weights: ``auto`` is bf16 on a CPU with native bf16 (AMX or
            AVX-512 BF16) or a GPU that has it, else fp32; or ``fp32`` / ``bf16``. ONNX and
            int8 exports run as exported.
    Returns:
        a TunedModel ready for ``predict`` (an EnsembleModel for ensembles; a ModelSet for a
        mapping).
    """
    if isinstance(path, Mapping):
        from tunelab.model_set import ModelSet

        return ModelSet({str(k): load(v, device, precision) for k, v in path.items()})
    folder = Path(path)
    info = read_run(folder)
    loader = LOADERS.get(info.kind)
    if loader is None:
        raise TunelabError(
            f"{folder}: a {info.kind!r} folder, which this tunelab cannot load "
            f"(it loads {', '.join(LOADERS)})"
        )
    try:
        return loader(folder, info, device, precision)
    except TunelabError:
        raise
    except MemoryError:
        raise TunelabError(f"{folder}: not enough memory to load this model") from None
    except Exception as e:  # a damaged file the checks could not see (folders without checksums)
        first = first_line(e)
        raise TunelabError(
            f"{folder}: cannot load the model ({type(e).__name__}: {first}); the folder may be "
            "damaged: re-create it or restore it from a copy"
        ) from e
