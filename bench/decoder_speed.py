"""Decoder models on a CPU: gemma3-270m + LoRA classification (training and test scoring)
against an HF Trainer + PEFT script, and SmolLM2 greedy generation against ``model.generate``.

``classify``: the bundled Chinese reviews (``--train-examples`` of train, 1 epoch, batch 16,
lr 1e-3, max length 128), LoRA with tunelab's defaults on both sides (r 16, alpha 32, dropout
0.1, all linear layers); the reference is ``bench/reference_trainer.py --lora`` in fp32 and
with ``bf16=True``, ours ``tunelab train`` at each ``--precisions``, then ``tunelab.load`` at
the same precision scoring the 1,736 test reviews. Each side in its own child process, one
after the other, for each of ``--seeds``; reports training examples/s, test scoring seconds,
accuracy, peak memory, per seed and averaged over the seeds.

``generate``: SmolLM2-135M-Instruct, the first ``--prompts`` English test reviews as chat
prompts ("Summarise ..."), greedy, 32 new tokens, the same batches on both sides; the
reference is ``model.generate(max_new_tokens=32, do_sample=False)`` on the fp32 model, ours
tunelab's ``generate`` at each precision; reports new tokens/s and how many outputs are
token-identical to the reference's.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoder_speed.py classify --train-examples 1000 \\
        --out bench/results/decoder_classify.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoder_speed.py classify --seeds 1,2,3 \\
        --reference-precisions bf16 --precisions bf16 \\
        --out bench/results/decoder_classify_seeds.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoder_speed.py generate \\
        --out bench/results/decoder_generate.json
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.report import emit  # noqa: E402

from tunelab.machine import describe as describe_machine  # noqa: E402

ZH = "data/zh_sentiment"


def _child(cmd: list[str]) -> dict:
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def classify(a: argparse.Namespace) -> dict:
    rows = []
    for seed in [int(x) for x in a.seeds.split(",")]:
        rows += _classify_seed(a, seed)
    summary = []
    for setup in dict.fromkeys(r["setup"] for r in rows):
        mine = [r for r in rows if r["setup"] == setup]
        summary.append(
            {
                "setup": setup,
                "seeds": len(mine),
                **{
                    k: statistics.mean(r[k] for r in mine)
                    for k in ("examples_per_s", "score_seconds", "test_accuracy", "peak_memory_mb")
                },
            }
        )
    refs = [r for r in summary if "reference" in r["setup"]]
    ours = [r for r in summary if r["setup"].startswith("tunelab")]
    if not refs:  # --reference-precisions none: tunelab's side only
        return {"train_examples": a.train_examples, "rows": rows, "summary": summary}
    ref = max(refs, key=lambda r: r["examples_per_s"])
    best = max(ours, key=lambda r: r["examples_per_s"])
    ref_score = min(refs, key=lambda r: r["score_seconds"])
    best_score = min(ours, key=lambda r: r["score_seconds"])
    return {
        "train_examples": a.train_examples,
        "rows": rows,
        "summary": summary,
        "train_speedup": best["examples_per_s"] / ref["examples_per_s"],
        "score_speedup": ref_score["score_seconds"] / best_score["score_seconds"],
        "accuracy_difference": best["test_accuracy"] - ref["test_accuracy"],
        "against": [ref["setup"], best["setup"]],
    }


def _classify_seed(a: argparse.Namespace, seed: int) -> list[dict]:
    common = ["--epochs", "1", "--batch-size", "16", "--learning-rate", "1e-3"]
    common += ["--max-length", "128", "--seed", str(seed)]
    rows = []
    for rp in [x for x in a.reference_precisions.split(",") if x and x != "none"]:
        bf16 = rp == "bf16"
        ref = _child(
            [
                str(BIN / "python"),
                "bench/reference_trainer.py",
                "--model",
                "gemma3-270m",
                "--lora",
                "--data",
                ZH,
                "--max-train-examples",
                str(a.train_examples),
                *common,
                *(["--bf16"] if bf16 else []),
            ]
        )
        rows.append(
            {
                "setup": "HF Trainer + PEFT (reference)" + (" bf16=True" if bf16 else ""),
                "seed": seed,
                "examples_per_s": ref["examples_per_s"],
                "train_seconds": ref["train_seconds"],
                "score_seconds": ref["predict_seconds"],
                "test_accuracy": ref["test_accuracy"],
                "peak_memory_mb": ref["peak_memory_mb"],
            }
        )
        print(rows[-1], file=sys.stderr)
    for p in a.precisions.split(","):
        out = Path(a.runs) / p
        train = [
            str(BIN / "tunelab"),
            "train",
            "--model",
            "gemma3-270m",
            "--method",
            "lora",
            "--train",
            f"{ZH}/train.csv",
            "--validation",
            f"{ZH}/validation.csv",
            "--max-train-examples",
            str(a.train_examples),
            "--max-eval-examples",
            "200",
            "--precision",
            p,
            "--report-to",
            "none",
            "--no-progress",
            "--output-dir",
            str(out),
            "--overwrite",
            *common,
        ]
        r = subprocess.run(train, capture_output=True, text=True, cwd=ROOT)
        if r.returncode:
            sys.exit(r.stderr[-3000:])
        m = json.loads((out / "metrics.json").read_text())["training"]
        score = _child([str(BIN / "python"), __file__, "_score", str(out), p])
        rows.append(
            {
                "setup": f"tunelab --precision {p}",
                "seed": seed,
                "examples_per_s": m["examples_per_s"],
                "train_seconds": m["train_seconds"],
                "score_seconds": score["seconds"],
                "test_accuracy": score["accuracy"],
                "peak_memory_mb": m["peak_memory_mb"],
                "score_peak_memory_mb": score["peak_memory_mb"],
                "backend": score["backend"],
            }
        )
        print(rows[-1], file=sys.stderr)
    return rows


def _score(run: str, precision: str) -> None:
    import tunelab

    m = tunelab.load(run, precision=precision)
    t0 = time.perf_counter()
    r = m.evaluate(str(ROOT / ZH / "test.csv"))
    out = {
        "seconds": time.perf_counter() - t0,
        "accuracy": r["accuracy"],
        "backend": m.backend,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(out))


def generate(a: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.data.batching import sorted_batches
    from tunelab.models import resolve_model
    from tunelab.tasks.generation import generate as ours
    from tunelab.tasks.generation import prompt_ids

    path = resolve_model("smollm2-135m").path
    tok = AutoTokenizer.from_pretrained(path)
    rows = list(csv.DictReader(open(ROOT / "data/en_sentiment/test.csv", encoding="utf-8")))
    prompts = [
        prompt_ids(tok, f"Summarise this review in one sentence: {r['text']}", 256)
        for r in rows[: a.prompts]
    ]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    stop = {tok.eos_token_id}
    # the batches tunelab's generate forms (similar lengths together): both sides decode
    # exactly these, so outputs compare row for row
    batches = list(sorted_batches([len(p) for p in prompts], 16))

    def reference(model) -> list[list[int]]:
        outs: list[list[int]] = [[] for _ in prompts]
        for b in batches:
            longest = max(len(prompts[i]) for i in b)
            ids = torch.full((len(b), longest), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(b):
                ids[row, longest - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[row, longest - len(prompts[i]) :] = 1
            with torch.inference_mode():
                g = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=32,
                    do_sample=False,
                    pad_token_id=pad,
                )
            for row, i in enumerate(b):
                outs[i] = g[row, longest:].tolist()
        return outs

    result: dict = {"prompts": len(prompts), "batch_size": 16, "new_tokens": 32, "rows": []}
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    reference(model)  # warm-up
    t0 = time.perf_counter()
    ref = reference(model)
    ref_s = time.perf_counter() - t0
    n_tokens = sum(len(_trim(x, stop)) for x in ref)  # up to and with the stop token
    result["rows"].append(
        {
            "setup": "model.generate fp32 (reference)",
            "seconds": ref_s,
            "tokens_per_s": n_tokens / ref_s,
        }
    )
    for p in a.precisions.split(","):
        m = AutoModelForCausalLM.from_pretrained(path).eval()
        if p == "bf16":
            m.to(torch.bfloat16)
        ours(m, tok, prompts[:16], 32, 16, token_ids=True)  # warm-up
        t0 = time.perf_counter()
        got = ours(m, tok, prompts, 32, 16, token_ids=True)
        s = time.perf_counter() - t0
        # a row's tokens up to its stop token (the pad after it depends on the batch's length)
        same = sum(_trim(x, stop) == _trim(y, stop) for x, y in zip(got, ref, strict=True))
        result["rows"].append(
            {
                "setup": f"tunelab generate {p}",
                "seconds": s,
                "tokens_per_s": sum(len(_trim(x, stop)) for x in got) / s,
                "speedup": ref_s / s,
                "token_identical": f"{same}/{len(ref)}",
            }
        )
        print(result["rows"][-1], file=sys.stderr)
    return result


def _trim(tokens: list[int], stop: set) -> list[int]:
    for k, t in enumerate(tokens):
        if t in stop:
            return tokens[: k + 1]
    return tokens


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_score":
        _score(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["classify", "generate"])
    ap.add_argument("--train-examples", type=int, default=1000)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--seeds", default="42", help="classify: comma-separated seeds")
    ap.add_argument(
        "--reference-precisions",
        default="fp32,bf16",
        help="classify: the reference's runs (none: tunelab's side only)",
    )
    ap.add_argument("--runs", default="/tmp/tunelab-decoder-speed")
    ap.add_argument("--out")
    a = ap.parse_args()
    result = {"machine": describe_machine(), "what": a.what, "command": " ".join(sys.argv)}
    result.update(classify(a) if a.what == "classify" else generate(a))
    emit(result, a.out)


if __name__ == "__main__":
    main()
