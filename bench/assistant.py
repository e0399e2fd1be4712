"""`tunelab assistant` benchmark (issue 23): retrieval quality and hand-off on the Python FAQ
(python3.11-doc, ``make data-faq``) with the hand-written paraphrase set
(data/assistant/python_faq_eval.jsonl), and on the hand-written English and Chinese shop FAQs.

For each retriever (BM25 alone, the pretrained MiniLM embeddings alone, the two fused; the same
with the encoder fine-tuned on the FAQ, without and with a decoder's rewrites of its questions):
Recall@1, Recall@5 and MRR on the test half's in-scope questions. For the fused retriever: the
hand-off threshold calibrated on the dev half (``--target-precision``), then on the test half the
share of out-of-scope questions handed off, the share of in-scope ones handed off, the precision
of what it answers, and answer latency p50/p99 (one question at a time, ``Assistant.ask``,
tickets to a throw-away SQLite file). Then the same KB built without validation questions, as
a user who has none builds it: its confidence fitted on tunelab's reference questions for the
encoder (``tunelab.assistant.prior``) as shipped, which include this FAQ's dev half, and with
this FAQ's rows left out (the figure for an FAQ tunelab has never seen; the Chinese encoder has
one reference FAQ, so it has no such figure).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/assistant.py [--lang en en-shop zh]
        [--target-precision 0.9] [--out bench/results/assistant.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SETS = {
    "en": (ROOT / "data/faq/python_faq.jsonl", ROOT / "data/assistant/python_faq_eval.jsonl"),
    "en-shop": (
        ROOT / "data/assistant/en_shop_faq.jsonl",
        ROOT / "data/assistant/en_shop_faq_eval.jsonl",
    ),
    "zh": (
        ROOT / "data/assistant/zh_shop_faq.jsonl",
        ROOT / "data/assistant/zh_shop_faq_eval.jsonl",
    ),
}
MODELS = {"en": "minilm-l6", "en-shop": "minilm-l6", "zh": "gemma3-270m"}
# the retriever's training: MiniLM in full; Gemma 3 270M with LoRA (shorter texts, smaller batch)
TUNE = {
    "en": ["--epochs", "3", "--batch-size", "32"],
    "en-shop": ["--epochs", "3", "--batch-size", "32"],
    "zh": ["--method", "lora", "--epochs", "3", "--batch-size", "16", "--max-length", "96"],
}
# the same training with a decoder's rewrites of each question added to the pairs
REWRITER = {"en": "smollm2-135m", "en-shop": "smollm2-135m", "zh": "gemma3-270m"}


def load_eval(path: Path) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {"dev": [], "test": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out[r["split"]].append((r["question"], r["faq_id"]))
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def tuned_retriever(lang: str, work: Path, log, rewrites: bool = False) -> tuple[str, dict]:
    """The retriever fine-tuned on the FAQ (``tunelab assistant tune``, the evaluation
    questions excluded; with ``rewrites``, the decoder's paraphrases too), trained once into
    ``work`` and reused."""
    import subprocess

    faq_file, eval_file = SETS[lang]
    name = f"{lang}-retriever" + ("-rewrites" if rewrites else "")
    out = work / name
    extra = ["--paraphrase-model", REWRITER[lang]] if rewrites else []
    cmd = [
        str(Path(sys.executable).parent / "tunelab"), "assistant", "tune",
        "--faq", str(faq_file), "--model", MODELS[lang], "--output", str(out),
        "--exclude", str(eval_file), *TUNE[lang], *extra, "--overwrite",
    ]  # fmt: skip
    record = work / f"{name}.bench.json"
    if record.is_file() and (out / "tunelab.json").is_file():
        return str(out), json.loads(record.read_text())
    log(f"training the {lang} retriever: {' '.join(cmd)}")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    rec = {
        "command": " ".join(cmd),
        "wall_s": round(time.perf_counter() - t0, 1),
        "validation": json.loads(r.stdout.splitlines()[-1])["validation"],
    }
    said = [line for line in r.stderr.splitlines() if line.startswith("rewrites: ")]
    if said:
        rec["rewrites"] = said[-1].removeprefix("rewrites: ")
    record.write_text(json.dumps(rec, indent=1))
    return str(out), rec


def measure(lang: str, target: float, work: Path, tune: bool, log) -> dict:
    faq_file, eval_file = SETS[lang]
    if not faq_file.is_file():
        raise SystemExit(f"{faq_file}: missing; run `make data-faq` first")
    out: dict = {
        "faq": str(faq_file.relative_to(ROOT)),
        "eval": str(eval_file.relative_to(ROOT)),
        "encoders": {"pretrained": measure_kb(lang, MODELS[lang], target, log)},
    }
    if tune:
        run, rec = tuned_retriever(lang, work, log)
        out["retriever_run"] = rec
        out["encoders"]["fine-tuned"] = measure_kb(lang, run, target, log)
        run, rec = tuned_retriever(lang, work, log, rewrites=True)
        out["retriever_run_rewrites"] = rec
        out["encoders"]["fine-tuned, decoder rewrites"] = measure_kb(lang, run, target, log)
    return out


def measure_kb(lang: str, model: str, target: float, log) -> dict:
    """The KB calibrated on the dev half, then built without validation questions (its
    confidence fitted on tunelab's reference questions, ``tunelab.assistant.prior``: as
    shipped, and leaving this FAQ's own dev half out of them), each asked the test half."""
    from tunelab.assistant import prior
    from tunelab.assistant.sources import read_faq

    faq_file, eval_file = SETS[lang]
    qs = load_eval(eval_file)
    out = build_and_ask(lang, model, target, qs["dev"], log, retrieval=True)
    shipped = prior.find(out["encoder"], prior.language(read_faq(faq_file)))
    out["without_validation"] = {
        "shipped_reference": build_and_ask(lang, model, target, None, log),
    }
    others = _leave_out(shipped, faq_file.name) if shipped else None
    if others is None:
        out["without_validation"]["leave_this_faq_out"] = "no other reference FAQ for this encoder"
    else:
        find = prior.find
        prior.find = lambda label, lang: others  # type: ignore[assignment]
        try:
            out["without_validation"]["leave_this_faq_out"] = build_and_ask(
                lang, model, target, None, log
            )
        finally:
            prior.find = find  # type: ignore[assignment]
    return out


def _leave_out(ref: dict, faq_name: str) -> dict | None:
    """The reference rows without those of one FAQ (its rows follow its sources' order)."""
    rows, sources, at = [], [], 0
    for src in ref["sources"]:
        if src["faq"] != faq_name:
            rows += ref["rows"][at : at + src["questions"]]
            sources.append(src)
        at += src["questions"]
    return {**ref, "rows": rows, "sources": sources} if sources else None


def build_and_ask(
    lang: str, model: str, target: float, validation, log, retrieval: bool = False
) -> dict:
    import numpy as np

    from tunelab.assistant import calibrate
    from tunelab.assistant import kb as kbmod
    from tunelab.assistant.assistant import Assistant
    from tunelab.assistant.sources import read_faq
    from tunelab.store.db import open_store

    faq_file, eval_file = SETS[lang]
    entries = read_faq(faq_file)
    qs = load_eval(eval_file)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        kb = kbmod.build(
            entries,
            Path(tmp) / "kb",
            model,
            [kbmod.file_record(faq_file, "faq", len(entries))],
            validation=validation,
            validation_source=f"{eval_file.name} (dev)",
            target_precision=target,
            log=log,
        )
        build_s = time.perf_counter() - t0
        index = {e.id: i for i, e in enumerate(kb.entries)}
        test = qs["test"]
        want = [None if f is None else index[f] for _, f in test]
        retrievers = {}
        if retrieval:
            vecs = kb.encoder.encode([q for q, _ in test])
            for mode in ("bm25", "dense", "fused"):
                cands = [
                    kb.search(q, mode=mode, vector=v) for (q, _), v in zip(test, vecs, strict=True)
                ]
                retrievers[mode] = calibrate.figures(cands, want)
            plain = [  # the fused ranking without the coverage re-scoring of its top
                kb.search(q, vector=v, rescore=False) for (q, _), v in zip(test, vecs, strict=True)
            ]
            retrievers["fused_without_coverage"] = calibrate.figures(plain, want)
        bot = Assistant(kb, open_store(str(Path(tmp) / "tickets.db")), "bench")
        for q, _ in qs["dev"][:20]:  # warm-up
            bot.ask(q)
        answers, secs = [], []
        for q, _ in test:
            t = time.perf_counter()
            answers.append(bot.ask(q))
            secs.append(time.perf_counter() - t)
        ins = np.array([w is not None for w in want])
        handed = np.array([a["handoff"] for a in answers])
        right = np.array(
            [
                not a["handoff"] and w is not None and a.get("id") == kb.entries[w].id
                for a, w in zip(answers, want, strict=True)
            ]
        )
        answered = ~handed
        out = {
            "encoder": model,
            "precision": kb.encoder.precision,
            "entries": len(entries),
            "test_in_scope": int(ins.sum()),
            "test_out_of_scope": int((~ins).sum()),
            "build_seconds": round(build_s, 1),
            "encoder_mix": kb.info.get("encoder"),
            "coverage_weight": kb.info["coverage"]["weight"],
            "calibration": kb.info["calibration"]["report"],
            "threshold": kb.info["calibration"]["threshold"],
            "handoff_test": {
                "out_of_scope_handed_off": round(float(handed[~ins].mean()), 4),
                "in_scope_handed_off": round(float(handed[ins].mean()), 4),
                "precision_of_answers": round(float(right[answered].mean()), 4)
                if answered.any()
                else None,
                "in_scope_answered_right": round(float(right[ins].mean()), 4),
            },
            "latency_ms": {
                "p50": round(1000 * percentile(secs, 0.5), 2),
                "p99": round(1000 * percentile(secs, 0.99), 2),
            },
        }
        if retrieval:
            out["retrieval_test"] = retrievers
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", nargs="+", choices=tuple(SETS), default=list(SETS))
    ap.add_argument("--target-precision", type=float, default=0.9)
    ap.add_argument("--no-tune", action="store_true", help="skip the fine-tuned retriever")
    ap.add_argument("--work", default="/tmp/benchassist", help="where the retrievers are kept")
    ap.add_argument("--out", default=str(ROOT / "bench/results/assistant.json"))
    a = ap.parse_args()
    from tunelab import machine

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/assistant.py " + " ".join(sys.argv[1:]),
        "machine": machine.describe(),
        "target_precision": a.target_precision,
        "sets": {
            lang: measure(lang, a.target_precision, work, not a.no_tune, log) for lang in a.lang
        },
    }
    Path(a.out).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    for lang, r in result["sets"].items():
        print(f"== {lang}: {r['faq']}, the test half of {r['eval']}")
        for which, m in r["encoders"].items():
            print(f"  encoder {m['encoder']} ({which}, {m['precision']})")
            for mode, f in m["retrieval_test"].items():
                print(
                    f"    {mode:6} R@1 {f['recall_at_1']:.3f}  R@5 {f['recall_at_5']:.3f}  "
                    f"MRR {f['mrr']:.3f}"
                )
            h = m["handoff_test"]
            print(
                f"    hand-off (fused): out-of-scope {h['out_of_scope_handed_off']:.1%}, in-scope "
                f"{h['in_scope_handed_off']:.1%}; precision of answers "
                f"{h['precision_of_answers']}; threshold {m['threshold']:.3f} (dev half)"
            )
            print(
                f"    latency per question: p50 {m['latency_ms']['p50']} ms, "
                f"p99 {m['latency_ms']['p99']} ms"
            )
            for how, w in m["without_validation"].items():
                if isinstance(w, str):
                    print(f"    built without validation, {how}: {w}")
                    continue
                h = w["handoff_test"]
                print(
                    f"    built without validation, {how}: out-of-scope "
                    f"{h['out_of_scope_handed_off']:.1%}, in-scope {h['in_scope_handed_off']:.1%}"
                    f" handed off; precision {h['precision_of_answers']}; "
                    f"threshold {w['threshold']:.3f}"
                )
    print(f"results: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
