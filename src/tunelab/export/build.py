"""``tunelab export``: a run folder to a deployable, self-describing folder.

    hf    adapters merged; a plain Transformers folder (``AutoModelFor...`` alone loads it)
    onnx  model.onnx (dynamic batch and sequence axes, ONNX Runtime fusions) + tokenizer +
          label map; parity against PyTorch checked at export time and recorded

    --quantize int8   onnx: ONNX Runtime dynamic int8 in the graph; hf: PyTorch dynamic int8,
                      applied when tunelab loads the folder (it stores float weights, so plain
                      Transformers still reads it); accuracy before/after on --eval-data
    --prune magnitude|heads --sparsity S   with the accuracy-vs-sparsity curve (plot + table)

Everything measured goes into the folder's ``tunelab.json`` under ``export``. The folder is
written to a temporary path and renamed into place, like a run folder.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tunelab.errors import TunelabError
from tunelab.machine import describe as describe_machine
from tunelab.methods import get_method
from tunelab.runs import (
    RunInfo,
    check_output_dir,
    copy_records,
    data_file,
    read_run,
    staged_dir,
    write_run,
)
from tunelab.tasks import get_task
from tunelab.tasks.encoding import encode_split

FORMATS = ("hf", "onnx")
ONNX_FILE = "model.onnx"


def export_model(
    run_dir: str | Path,
    output_dir: str | Path,
    fmt: str = "hf",
    quantize: str | None = None,
    prune: str | None = None,
    sparsity: float | None = None,
    eval_data: str | None = None,
    overwrite: bool = False,
    log=print,
) -> dict:
    """Export ``run_dir`` to ``output_dir``; returns the ``export`` record written to its
    ``tunelab.json``.

    Raises:
        TunelabError: an impossible combination (method that cannot merge, generation to
            ONNX, pruning or quantization without --eval-data, ...), or bad files.
    """
    from tunelab.inference import load_run

    run = Path(run_dir)
    info = read_run(run)
    method = get_method(info.method)
    task = get_task(info.task)
    source = "--eval-data" if eval_data else None
    if (quantize or prune) and not eval_data:  # the run's own held-out split, if still there
        eval_data, source = _own_split(run)
        if eval_data:
            log(f"no --eval-data: measuring on the run's own {source} split, {eval_data}")
        elif quantize and not prune:
            log(
                "no --eval-data, and the run's test and validation files are gone: quantizing "
                "without measuring accuracy (give --eval-data FILE to measure it)"
            )
    _check_options(info, method, fmt, quantize, prune, sparsity, eval_data)
    check_output_dir(output_dir, overwrite)
    if eval_data and not Path(eval_data).is_file():
        raise TunelabError(f"{eval_data}: evaluation file not found")

    # fp32, whatever the CPU: exports are compared with PyTorch in fp32; and a private copy
    # of the base, since merging writes into its weights
    loaded: Any = load_run(run, info, device="cpu", precision="fp32", share_base=False)
    if method.merge is not None and method.name != "full":
        loaded.model = method.merge(loaded.model)
    model = loaded.model
    record: dict = {
        "format": fmt,
        "merged_method": method.name,
        "source_run": str(run.resolve()),
        "quantize": quantize,
        "eval_data": eval_data,
        "eval_data_source": source,  # --eval-data, the run's test/validation split, or None
        "accuracy_measured": bool(eval_data),
        "metric": task.default_metric,
    }
    evaluate = (lambda m: _evaluate(loaded, m, eval_data)) if eval_data else None
    if evaluate:
        log(f"evaluating the unexported model on {eval_data} ...")
        record["metrics_before"] = evaluate(model)
    heads: dict[int, list[int]] = {}
    with staged_dir(output_dir, overwrite) as tmp:
        if prune:
            from tunelab.export.pruning_curve import prune_with_curve

            log(f"pruning ({prune}) and measuring the curve on {eval_data} ...")
            assert sparsity is not None and eval_data  # _check_options: --prune needs both
            model, heads, record["prune"] = prune_with_curve(
                loaded, model, prune, float(sparsity), eval_data, evaluate, tmp, log
            )
            loaded.model = model
        if fmt == "hf":
            model.save_pretrained(tmp, safe_serialization=True)
            if quantize:
                from tunelab.backends import quantize_torch_int8

                log("quantizing (PyTorch dynamic int8) and measuring ...")
                record["quantize_backend"] = "pytorch-dynamic (applied on load)"
                if evaluate:
                    record["metrics_after"] = evaluate(quantize_torch_int8(copy.deepcopy(model)))
        else:
            _write_onnx(loaded, model, heads, tmp, quantize, eval_data, record, evaluate, log)
        loaded.tokenizer.save_pretrained(tmp)
        copy_records(run, tmp)
        record["files"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        record["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record["machine"] = describe_machine()  # where the parity and metrics were measured
        write_run(tmp, dataclasses.replace(info, method="full", export=record))
    return record


def _check_options(info: RunInfo, method, fmt: str, quantize, prune, sparsity, eval_data) -> None:
    if fmt not in FORMATS:
        raise TunelabError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    done = info.export or {}
    if done.get("format") == "onnx" or done.get("quantize"):
        raise TunelabError(
            f"this folder is already an {done['format']} "
            f"{'int8 ' if done.get('quantize') else ''}export; export from the "
            f"training run ({done.get('source_run')}) instead"
        )
    if method.merge is None:
        raise TunelabError(
            f"method '{method.name}' cannot be merged into the base weights "
            "(it adds computation the base model does not have), so it has no "
            "standalone export; load the run folder with tunelab.load instead"
        )
    if fmt == "hf" and info.spec.get("pooling") == "mean":
        raise TunelabError(
            "this run's classifier reads mean-pooled embeddings (SetFit), which a plain "
            "Transformers classifier cannot (it reads the first token): export it with "
            "--format onnx, or load the run folder itself with tunelab.load"
        )
    if fmt == "onnx" and get_task(info.task).generative:
        raise TunelabError(
            "generation runs export with --format hf (an ONNX graph of one "
            "forward pass cannot generate by itself)"
        )
    if quantize not in (None, "int8"):
        raise TunelabError(f"--quantize {quantize!r}: only int8 is supported")
    if prune is not None:
        from tunelab.export.prune import PRUNE_KINDS

        if prune not in PRUNE_KINDS:
            raise TunelabError(f"--prune {prune!r}: choose from {', '.join(PRUNE_KINDS)}")
        if sparsity is None or not 0.0 < float(sparsity) < 1.0:
            raise TunelabError(
                "--prune needs --sparsity between 0 and 1 (the fraction of "
                "weights, or of attention heads, to remove)"
            )
    elif sparsity is not None:
        raise TunelabError("--sparsity is only used with --prune magnitude|heads")
    if prune and not eval_data:
        raise TunelabError(
            "--prune needs --eval-data FILE (a labelled file; the run's own test and "
            "validation files are gone) to measure the accuracy curve it cuts along"
        )


def _own_split(run: Path) -> tuple[str | None, str | None]:
    """(file, split) of the run's recorded test split, else validation, if still readable."""
    for split in ("test", "validation"):
        f = data_file(run, split)
        if f and Path(f).is_file():
            return f, split
    return None, None


def _evaluate(loaded, model, eval_data: str) -> dict:
    """Metrics of ``model`` (torch module or ONNX session) on ``eval_data``: floats only."""
    old, loaded.model = loaded.model, model
    try:
        m = loaded.evaluate(eval_data)
    finally:
        loaded.model = old
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.floating))}


def _parity_ids(loaded, eval_data: str | None) -> list[list[int]]:
    """Token ids of up to 256 real texts: the evaluation file, else the run's validation
    split, else a few sentences made from the vocabulary."""
    from tunelab.data.batching import tokenize

    texts: list = []
    for path in (eval_data, data_file(loaded.run_dir, "validation")):
        if path and Path(path).is_file():
            lc = loaded.info.label_column
            ex = loaded.task.read_examples(path, loaded.info.text_column, lc)
            if loaded.task.encode is not None:
                return encode_split(
                    loaded.task, loaded.tokenizer, ex, loaded.spec, loaded.max_length, lc
                )[0][:256]
            texts = ex.texts[:256]
            break
    if not texts:
        vocab = [t for t in loaded.tokenizer.get_vocab() if t.isalpha()][:400]
        texts = [" ".join(vocab[i : i + 12 + i % 9]) for i in range(0, len(vocab), 7)]
    return tokenize(loaded.tokenizer, texts, loaded.max_length)


def _write_onnx(
    loaded, model, heads, tmp: Path, quantize, eval_data, record, evaluate, log
) -> None:
    from tunelab.backends import OnnxModule
    from tunelab.export.onnx import QUANTIZE_OPTIONS, optimize, parity, quantize_int8, to_onnx
    from tunelab.export.prune import slice_pruned_heads

    per_token = loaded.task.per_token
    ids = _parity_ids(loaded, eval_data)
    traced = model
    if heads:  # the graph computes only the heads that are left
        traced = copy.deepcopy(model)
        slice_pruned_heads(traced, heads)
    work = tmp / ".work"
    work.mkdir()
    log("tracing to ONNX ...")
    to_onnx(traced, work / "plain.onnx", loaded.pad_id)
    best = work / "plain.onnx"
    fused = optimize(work / "plain.onnx", work / "fused.onnx", model.config, bool(heads))
    if fused:  # kept only if it still matches PyTorch
        check = parity(work / "fused.onnx", model, ids, loaded.pad_id, per_token)
        if check["max_abs_logit_diff"] < 1e-3:
            best = work / "fused.onnx"
    record["fusions"] = fused if best.name == "fused.onnx" else []
    check = parity(best, model, ids, loaded.pad_id, per_token)
    if check["max_abs_logit_diff"] > 1e-3:
        raise TunelabError(
            f"ONNX export does not match PyTorch (largest logit difference "
            f"{check['max_abs_logit_diff']:.2g} on {check['n']} texts); "
            "nothing was written"
        )
    record["parity_fp32"] = check
    final = best
    if quantize:
        log("quantizing (ONNX Runtime dynamic int8) ...")
        quantize_int8(best, work / "int8.onnx")
        final = work / "int8.onnx"
        record["quantize_backend"] = "onnxruntime-dynamic"
        record["quantize_options"] = dict(QUANTIZE_OPTIONS)
        record["parity_int8"] = parity(final, model, ids, loaded.pad_id, per_token)
    shutil.move(str(final), str(tmp / ONNX_FILE))
    shutil.rmtree(work)
    loaded.model.config.save_pretrained(tmp)  # label map (id2label) and architecture
    if evaluate:
        log("evaluating the exported graph ...")
        record["metrics_after"] = evaluate(OnnxModule(tmp / ONNX_FILE))


def export_merged(run_dir: str | Path, output_dir: str | Path, overwrite: bool = False) -> Path:
    """The adapter folded into the base weights, as a plain Transformers folder."""
    export_model(run_dir, output_dir, "hf", overwrite=overwrite, log=lambda *_: None)
    return Path(output_dir)
