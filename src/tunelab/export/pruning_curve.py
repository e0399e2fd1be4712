"""Prune for export and measure the accuracy-vs-sparsity curve on the evaluation file."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import torch

from tunelab.data.batching import collate, output_logits, sorted_batches
from tunelab.export import prune as P
from tunelab.runs import data_file
from tunelab.tasks.encoding import encode_split


def sparsity_grid(target: float) -> list[float]:
    """0, 0.1, 0.2, ... below the target, then the target itself."""
    steps = [round(0.1 * i, 2) for i in range(int(target * 10) + 1) if 0.1 * i < target - 1e-9]
    return steps + [round(target, 4)]


def prune_with_curve(
    loaded,
    model: torch.nn.Module,
    kind: str,
    target: float,
    eval_data: str,
    evaluate,
    out_dir: Path,
    log,
) -> tuple:
    """Returns (pruned model, heads removed per layer, record); the curve is plotted to
    ``out_dir/pruning_curve.png``."""
    head_names = loaded.task.head_module_names(model)
    metric = loaded.task.default_metric
    importance = None
    if kind == "heads":
        importance = _importance(loaded, model, eval_data)
        total_heads = P.count_heads(model)
    curve = []
    best = None
    for s in sparsity_grid(target):
        m = copy.deepcopy(model)
        if kind == "magnitude":
            achieved, heads = P.magnitude_prune(m, s, head_names), {}
        else:
            assert importance is not None  # computed above for kind == "heads"
            heads = P.choose_heads(importance, s)
            P.mask_heads(m, heads)
            achieved = sum(len(v) for v in heads.values()) / total_heads
        scores = evaluate(m)
        log(f"  {kind} sparsity {achieved:.2f}: {metric} {scores.get(metric, float('nan')):.4f}")
        curve.append({"sparsity": s, "achieved": achieved, **scores})
        best = (m, heads, achieved)
    assert best is not None  # the grid always holds the target
    m, heads, achieved = best
    record = {"kind": kind, "sparsity": target, "achieved_sparsity": achieved, "curve": curve}
    if kind == "heads":
        record["heads_removed"] = {str(k): v for k, v in heads.items()}
        record["heads_total"] = total_heads
        record["importance_data"] = importance_source(loaded, eval_data)
    else:
        record["pruned_layers"] = len(P.prunable_linears(m, head_names))
    _plot(curve, kind, metric, out_dir / "pruning_curve.png")
    record["plot"] = "pruning_curve.png"
    return m, heads, record


def importance_source(loaded, eval_data: str) -> str:
    val = data_file(loaded.run_dir, "validation")
    return val if val and Path(val).is_file() else eval_data


def _importance(loaded, model, eval_data: str) -> torch.Tensor:
    """Head importance on the run's validation split (the evaluation file if it is gone)."""
    task, lc = loaded.task, loaded.info.label_column
    ex = task.read_examples(importance_source(loaded, eval_data), loaded.info.text_column, lc)
    ids, y = encode_split(task, loaded.tokenizer, ex, loaded.spec, loaded.max_length, lc)
    collate_targets = task.collate_targets
    loss = partial(task.loss_fn, spec=loaded.spec)

    def batches():
        for b in sorted_batches([len(x) for x in ids], 32):
            yield collate([ids[i] for i in b], loaded.pad_id), collate_targets([y[i] for i in b])

    return P.head_importance(model, batches(), lambda out, t: loss(output_logits(out).float(), t))


def _plot(curve: list[dict], kind: str, metric: str, out: Path) -> None:
    from tunelab.plots import plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(
        [100 * c["achieved"] for c in curve], [c.get(metric, float("nan")) for c in curve], "o-"
    )
    ax.set_xlabel("weights removed (%)" if kind == "magnitude" else "attention heads removed (%)")
    ax.set_ylabel(metric)
    ax.set_title(f"{kind} pruning")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
