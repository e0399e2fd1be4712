"""``tunelab export``: a run as a deployable folder, and the summary of what was measured."""

from __future__ import annotations

import argparse
import sys

from tunelab.errors import TunelabError


def add_export(sub) -> None:
    x = sub.add_parser(
        "export",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="write a run as a deployable folder: merged Transformers, ONNX, int8, pruned",
        description="Write a run folder as a self-describing deployable folder. Adapters "
        "(LoRA, AdaLoRA, IA3, ...) are merged into the weights. Everything "
        "measured (parity with PyTorch, accuracy before and after, the pruning "
        "curve) is recorded in the folder's tunelab.json.",
        epilog="examples:\n"
        "  tunelab export --model-dir runs/reviews --format hf --output-dir exports/hf\n"
        "  tunelab export --model-dir runs/reviews --format onnx --quantize int8 \\\n"
        "      --eval-data data/en_sentiment/test.csv --output-dir exports/int8\n"
        "  tunelab export --model-dir runs/reviews --format onnx --prune heads "
        "--sparsity 0.25 \\\n"
        "      --eval-data data/en_sentiment/test.csv --output-dir exports/heads25",
    )
    x.add_argument("--model-dir", required=True, help="run folder from `tunelab train`")
    x.add_argument(
        "--format",
        choices=["hf", "onnx"],
        default="hf",
        help="hf: plain Transformers folder (AutoModelFor... loads it); onnx: "
        "model.onnx for ONNX Runtime, parity-checked (default: hf)",
    )
    x.add_argument(
        "--merge", action="store_true", help="same as --format hf (adapters are always merged)"
    )
    x.add_argument(
        "--quantize",
        choices=["int8"],
        help="dynamic int8 quantization (onnx: in the graph; hf: applied by "
        "tunelab.load); accuracy measured on --eval-data, else on the run's own test or "
        "validation file",
    )
    x.add_argument(
        "--prune",
        choices=["magnitude", "heads"],
        help="magnitude: zero the smallest weights of each layer; heads: remove the "
        "least important attention heads (ranked on the run's validation "
        "data); needs --sparsity, and --eval-data unless the run's own test or validation "
        "file is still there",
    )
    x.add_argument(
        "--sparsity",
        type=float,
        help="fraction of weights (magnitude) or of attention heads (heads) to remove, e.g. 0.5",
    )
    x.add_argument(
        "--eval-data",
        help="labelled file: accuracy before and after is measured on it and recorded "
        "(default: the run's own test, else validation, file)",
    )
    x.add_argument("--output-dir", required=True, help="folder to create")
    x.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    x.set_defaults(func=cmd_export)


def cmd_export(a: argparse.Namespace) -> int:
    from tunelab.export import export_model

    if a.merge and a.format != "hf":
        raise TunelabError(
            "--merge writes a Transformers folder: it goes with --format hf "
            "(ONNX exports are always merged)"
        )
    rec = export_model(
        a.model_dir,
        a.output_dir,
        a.format,
        a.quantize,
        a.prune,
        a.sparsity,
        a.eval_data,
        a.overwrite,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(format_export(rec, a.output_dir))
    return 0


def format_export(rec: dict, out: str) -> str:
    """The export's summary: what was done and what was measured."""
    lines = [
        f"{rec['format']} export written to {out}"
        + (f" ({rec['merged_method']} merged)" if rec["merged_method"] != "full" else "")
    ]
    metric = rec["metric"]
    if rec.get("fusions"):
        lines.append(f"  ONNX Runtime fusions: {', '.join(rec['fusions'])}")
    for key, what in (
        ("parity_fp32", "parity with PyTorch"),
        ("parity_int8", "int8 against PyTorch fp32"),
    ):
        if key in rec:
            p = rec[key]
            agree = (
                f", top class agrees on {100 * p['argmax_agreement']:.1f}%"
                if p.get("argmax_agreement") is not None
                else ""
            )
            lines.append(
                f"  {what}: largest logit difference {p['max_abs_logit_diff']:.2g} "
                f"on {p['n']} texts{agree}"
            )
    if "prune" in rec:
        pr = rec["prune"]
        lines.append(
            f"  pruned ({pr['kind']}): {100 * pr['achieved_sparsity']:.1f}% removed; "
            f"curve in {out}/{pr['plot']}"
        )
    before, after = rec.get("metrics_before", {}), rec.get("metrics_after")
    if before:
        pruned = rec.get("prune", {}).get("curve", [{}])[-1].get(metric)
        parts = [f"{metric} before {before.get(metric, float('nan')):.4f}"]
        if pruned is not None:
            parts.append(f"pruned {pruned:.4f}")
        if after:
            parts.append(f"exported {after.get(metric, float('nan')):.4f}")
        lines.append(f"  on {rec['eval_data']}: " + ", ".join(parts))
    size = sum(rec.get("files", {}).values())
    lines.append(
        f"  {size / 1e6:.1f} MB; load it with tunelab.load({out!r}) or "
        f"`tunelab predict --model-dir {out}`"
    )
    return "\n".join(lines)
