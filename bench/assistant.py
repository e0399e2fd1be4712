"""`tunelab assistant` benchmark (issue 23): retrieval quality and hand-off on the Python FAQ
(python3.11-doc, ``make data-faq``) with the hand-written paraphrase set
(data/assistant/python_faq_eval.jsonl), and on the hand-written Chinese shop FAQ.

For each retriever (BM25 alone, the pretrained MiniLM embeddings alone, the two fused):
Recall@1, Recall@5 and MRR on the test half's in-scope questions. For the fused retriever: the
hand-off threshold calibrated on the dev half (``--target-precision``), then on the test half the
share of out-of-scope questions handed off, the share of in-scope ones handed off, the precision
of what it answers, and answer latency p50/p99 (one question at a time, ``Assistant.ask``,
tickets to a throw-away SQLite file).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/assistant.py [--lang en zh] [--target-precision 0.9]
        [--out bench/results/assistant.json]
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
    "zh": (
        ROOT / "data/assistant/zh_shop_faq.jsonl",
        ROOT / "data/assistant/zh_shop_faq_eval.jsonl",
    ),
}
MODELS = {"en": "minilm-l6", "zh": "gemma3-270m"}


def load_eval(path: Path) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {"dev": [], "test": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out[r["split"]].append((r["question"], r["faq_id"]))
    return out


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def measure(lang: str, target: float, log) -> dict:
    import numpy as np

    from tunelab.assistant import calibrate
    from tunelab.assistant import kb as kbmod
    from tunelab.assistant.assistant import Assistant
    from tunelab.assistant.sources import read_faq
    from tunelab.store.db import open_store

    faq_file, eval_file = SETS[lang]
    if not faq_file.is_file():
        raise SystemExit(f"{faq_file}: missing; run `make data-faq` first")
    entries = read_faq(faq_file)
    qs = load_eval(eval_file)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        kb = kbmod.build(
            entries,
            Path(tmp) / "kb",
            MODELS[lang],
            [kbmod.file_record(faq_file, "faq", len(entries))],
            validation=qs["dev"],
            validation_source=f"{eval_file.name} (dev)",
            target_precision=target,
            log=log,
        )
        build_s = time.perf_counter() - t0
        index = {e.id: i for i, e in enumerate(kb.entries)}
        test = qs["test"]
        want = [None if f is None else index[f] for _, f in test]
        vecs = kb.encoder.encode([q for q, _ in test])
        retrievers = {}
        for mode in ("bm25", "dense", "fused"):
            cands = [
                kb.search(q, mode=mode, vector=v) for (q, _), v in zip(test, vecs, strict=True)
            ]
            retrievers[mode] = calibrate.figures(cands, want)
        bot = Assistant(kb, open_store(str(Path(tmp) / "tickets.db")), "bench")
        for q, _ in qs["dev"][:20]:  # warm-up
            bot.ask(q)
        answers, secs = [], []
        for q, _ in test:
            t = time.perf_counter()
            answers.append(bot.ask(q))
            secs.append(time.perf_counter() - t)
        ins = [w is not None for w in want]
        handed = np.array([a["handoff"] for a in answers])
        right = np.array(
            [
                not a["handoff"] and w is not None and a.get("id") == kb.entries[w].id
                for a, w in zip(answers, want, strict=True)
            ]
        )
        ins_a = np.array(ins)
        answered = ~handed
        return {
            "faq": str(faq_file.relative_to(ROOT)),
            "entries": len(entries),
            "eval": str(eval_file.relative_to(ROOT)),
            "test_in_scope": int(ins_a.sum()),
            "test_out_of_scope": int((~ins_a).sum()),
            "encoder": MODELS[lang],
            "precision": kb.encoder.precision,
            "build_seconds": round(build_s, 1),
            "retrieval_test": retrievers,
            "calibration_dev": kb.info["calibration"]["report"],
            "threshold": kb.info["calibration"]["threshold"],
            "handoff_test": {
                "out_of_scope_handed_off": round(float(handed[~ins_a].mean()), 4),
                "in_scope_handed_off": round(float(handed[ins_a].mean()), 4),
                "precision_of_answers": round(float(right[answered].mean()), 4)
                if answered.any()
                else None,
                "in_scope_answered_right": round(float(right[ins_a].mean()), 4),
            },
            "latency_ms": {
                "p50": round(1000 * percentile(secs, 0.5), 2),
                "p99": round(1000 * percentile(secs, 0.99), 2),
            },
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", nargs="+", choices=("en", "zh"), default=["en", "zh"])
    ap.add_argument("--target-precision", type=float, default=0.9)
    ap.add_argument("--out", default=str(ROOT / "bench/results/assistant.json"))
    a = ap.parse_args()
    from tunelab import machine

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    result = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/assistant.py " + " ".join(sys.argv[1:]),
        "machine": machine.describe(),
        "target_precision": a.target_precision,
        "sets": {lang: measure(lang, a.target_precision, log) for lang in a.lang},
    }
    Path(a.out).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    for lang, r in result["sets"].items():
        print(
            f"== {lang}: {r['faq']} ({r['entries']} entries), {r['eval']} test half, "
            f"encoder {r['encoder']} ({r['precision']})"
        )
        for mode, f in r["retrieval_test"].items():
            print(
                f"  {mode:6} R@1 {f['recall_at_1']:.3f}  R@5 {f['recall_at_5']:.3f}  "
                f"MRR {f['mrr']:.3f}"
            )
        h = r["handoff_test"]
        print(
            f"  hand-off: out-of-scope {h['out_of_scope_handed_off']:.1%}, in-scope "
            f"{h['in_scope_handed_off']:.1%}; precision of answers {h['precision_of_answers']}; "
            f"threshold {r['threshold']:.3f} (calibrated on the dev half)"
        )
        print(
            f"  latency per question: p50 {r['latency_ms']['p50']} ms, "
            f"p99 {r['latency_ms']['p99']} ms"
        )
    print(f"results: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
