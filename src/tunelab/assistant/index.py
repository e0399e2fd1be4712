"""The two indexes of a knowledge base.

- ``DenseIndex``: unit-length vectors searched by inner product. Up to ``EXACT_LIMIT`` rows an
  exact search (one matrix-vector product); above it FAISS HNSW (``IndexHNSWFlat``, inner
  product, M=32, efSearch=128), which stays near a millisecond at 100,000 rows where the exact
  product reads the whole matrix per question (bench/assistant_index.py measures both: at
  100,000 keys of 384 dimensions, exact 5.4 ms and HNSW 1.9 ms at p50 on 2 cores).
- ``BM25Index``: bm25s over ``text.words`` (jieba words for Chinese); unknown words are dropped
  from the question instead of failing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunelab.assistant.text import words

EXACT_LIMIT = 20_000


class DenseIndex:
    def __init__(self, vectors: np.ndarray, hnsw=None) -> None:
        mapped = isinstance(vectors, np.memmap)
        self.vectors = vectors if mapped else np.ascontiguousarray(vectors, dtype=np.float32)
        self.hnsw = hnsw
        if self.hnsw is None and len(self.vectors) > EXACT_LIMIT:
            self.hnsw = _hnsw(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``k`` nearest rows, best first."""
        k = min(k, len(self.vectors))
        if self.hnsw is not None:
            scores, rows = self.hnsw.search(query.reshape(1, -1).astype(np.float32), k)
            keep = rows[0] >= 0
            return rows[0][keep], scores[0][keep]
        sims = self.vectors @ query
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top])]
        return top, sims[top]

    def save(self, folder: Path) -> None:
        np.save(folder / "vectors.npy", self.vectors)
        if self.hnsw is not None:
            import faiss

            faiss.write_index(self.hnsw, str(folder / "vectors.hnsw"))

    @classmethod
    def load(cls, folder: Path) -> DenseIndex:
        hnsw = None
        has_hnsw = (folder / "vectors.hnsw").is_file()
        # with HNSW the graph holds its own copy: the matrix stays on disk (memory-mapped) and
        # is read only for exact scoring (calibration), not resident twice
        vectors = np.load(folder / "vectors.npy", mmap_mode="r" if has_hnsw else None)
        if has_hnsw:
            import faiss

            hnsw = faiss.read_index(str(folder / "vectors.hnsw"))
            faiss.ParameterSpace().set_index_parameter(hnsw, "efSearch", 128)
        return cls(vectors, hnsw)


def _hnsw(vectors: np.ndarray):
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(vectors)
    index.hnsw.efSearch = 128
    return index


class BM25Index:
    def __init__(self, retriever, n: int) -> None:
        self.retriever = retriever
        self.n = n
        self.vocab = retriever.vocab_dict

    @classmethod
    def build(cls, texts: list[str]) -> BM25Index:
        import bm25s

        r = bm25s.BM25()
        tokens = [words(t) or ["_"] for t in texts]  # bm25s needs a word in every row
        r.index(tokens, show_progress=False)
        return cls(r, len(texts))

    def scores(self, text: str) -> np.ndarray:
        """The BM25 score of every row for ``text`` (zeros when no word is known)."""
        q = [w for w in words(text) if w in self.vocab]
        if not q:
            return np.zeros(self.n, dtype=np.float32)
        return np.asarray(self.retriever.get_scores(q), dtype=np.float32)

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder / "bm25"), show_progress=False)
        (folder / "bm25" / "rows.json").write_text(json.dumps({"rows": self.n}))

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        import bm25s

        r = bm25s.BM25.load(str(folder / "bm25"), show_progress=False, verbosity=0)
        n = json.loads((folder / "bm25" / "rows.json").read_text())["rows"]
        return cls(r, n)
