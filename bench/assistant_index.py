"""The assistant's indexes at scale (issue 23): search latency p50/p99 and resident memory with
100,000 passages, exact dense search against FAISS HNSW, and BM25.

Passages: real review sentences of the bundled sets (English and Chinese), three consecutive
sentences per passage, cycled with a counter appended until there are ``--passages``. Vectors:
the dense index's cost depends on their number and width (384, MiniLM's), not on what they
mean, so random unit vectors stand in for encoding 100,000 passages (about 4 minutes);
questions are 200 other sentences of the sets, and their vectors random too. The indexes are
built and saved, then each kind (exact, FAISS HNSW) is loaded in a fresh process, as a serving
assistant loads them, where resident memory and latency are measured. Each search is timed
alone, the way the assistant runs one question: the dense top 200 keys, the BM25 scores of
every key, the fused ranking.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/assistant_index.py [--passages 100000]
        [--out bench/results/assistant_index.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sentences() -> list[str]:
    out = []
    for name in ("en_sentiment", "zh_sentiment"):
        for split in ("train", "validation", "test"):
            with open(ROOT / "data" / name / f"{split}.csv", encoding="utf-8") as f:
                out += [r["text"] for r in csv.DictReader(f)]
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(1000 * xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))], 3)


def build(a, work: Path) -> dict:
    """Build and save both indexes (this process: building holds every token list)."""
    import numpy as np

    from tunelab.assistant import index as idx

    sents = sentences()
    pool = sents[200:]
    passages = [
        " ".join(pool[(3 * i + j) % len(pool)] for j in range(3)) + f" #{i}"
        for i in range(a.passages)
    ]
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((a.passages, 384), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    t0 = time.perf_counter()
    bm25 = idx.BM25Index.build(passages)
    out = {"bm25_build_s": round(time.perf_counter() - t0, 1)}
    bm25.save(work)
    t0 = time.perf_counter()
    dense = idx.DenseIndex(vecs)  # HNSW above EXACT_LIMIT
    out["hnsw_build_s"] = round(time.perf_counter() - t0, 1)
    dense.save(work)
    return out


def serve(work: Path, kind: str, passages: int) -> dict:
    """In a fresh process: load the indexes as the assistant does, then time 200 questions."""
    import numpy as np

    from tunelab.assistant import index as idx
    from tunelab.assistant import retrieval

    base = rss_mb()
    bm25 = idx.BM25Index.load(work)
    after_bm25 = rss_mb()
    dense = idx.DenseIndex.load(work)
    if kind == "exact":
        dense.hnsw = None
    after_dense = rss_mb()
    questions = sentences()[:200]
    rng = np.random.default_rng(1)
    qv = rng.standard_normal((len(questions), 384), dtype=np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    key_entry = np.arange(passages)
    dense_s, full_s = [], []
    for q, v in zip(questions, qv, strict=True):
        t = time.perf_counter()
        rows, sims = dense.search(v, retrieval.DEPTH * 4)
        dense_s.append(time.perf_counter() - t)
        d = np.full(passages, -np.inf, dtype=np.float32)
        d[rows] = sims
        b = retrieval.per_entry(bm25.scores(q), key_entry, passages)
        retrieval.rank(retrieval.per_entry(d, key_entry, passages), b, "fused")
        full_s.append(time.perf_counter() - t)
    return {
        "dense_search_ms": {"p50": pct(dense_s, 0.5), "p99": pct(dense_s, 0.99)},
        "search_ms_with_bm25_and_fusion": {"p50": pct(full_s, 0.5), "p99": pct(full_s, 0.99)},
        "bm25_index_rss_mb": round(after_bm25 - base, 1),
        "dense_index_rss_mb": round(after_dense - after_bm25, 1),
        "process_rss_mb": round(rss_mb(), 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--out", default=str(ROOT / "bench/results/assistant_index.json"))
    ap.add_argument("--serve", nargs=2, metavar=("WORK", "KIND"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        print(json.dumps(serve(Path(a.serve[0]), a.serve[1], a.passages)))
        return 0
    import subprocess
    import tempfile

    from tunelab import machine

    result: dict = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/assistant_index.py "
        + " ".join(sys.argv[1:]),
        "machine": machine.describe(),
        "passages": a.passages,
        "dim": 384,
    }
    with tempfile.TemporaryDirectory() as tmp:
        result.update(build(a, Path(tmp)))
        for kind in ("exact", "hnsw"):
            r = subprocess.run(
                [sys.executable, __file__, "--serve", tmp, kind, "--passages", str(a.passages)],
                capture_output=True,
                text=True,
                check=True,
            )
            result[kind] = json.loads(r.stdout.splitlines()[-1])
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
