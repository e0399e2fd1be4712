"""A knowledge base folder: built once by ``tunelab assistant build``, then read by the assistant.

    KB/kb.json        what it is: sources (with sha256), encoder (and its measured mix with its
                      base, for a fine-tuned retriever), sizes, index kinds, the fusion
                      and coverage weights, the calibration (confidence model, hand-off
                      threshold, its figures)
    KB/entries.jsonl  one entry per line (FAQ entries, then document passages)
    KB/keys.jsonl     [entry, kind, text]: what questions are matched against
    KB/vectors.npy    the keys' unit vectors (+ vectors.hnsw above 20,000 keys)
    KB/bm25/          the BM25 index over the keys

It is written to a temporary folder beside the target and moved into place only when complete:
an existing KB is replaced whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from tunelab.assistant import confidence, coverage, retrieval
from tunelab.assistant.encoder import Encoder, model_label
from tunelab.assistant.index import BM25Index, DenseIndex
from tunelab.assistant.sources import Entry
from tunelab.errors import TunelabError

FORMAT = "tunelab-kb/1"
MIX_SEARCH_KEYS = 20_000  # above: the fine-tuned weights as they are (each mix encodes every key)
ANSWER_KEY_CHARS = 500  # an FAQ answer's opening, matched too (questions asked as statements)


class KnowledgeBase:
    def __init__(
        self,
        entries: list[Entry],
        keys: list[tuple[int, str, str]],
        encoder: Encoder,
        dense: DenseIndex,
        bm25: BM25Index,
        info: dict,
    ) -> None:
        self.entries = entries
        self.keys = keys
        self.key_entry = np.asarray([k[0] for k in keys], dtype=np.int64)
        self.encoder = encoder
        self.dense = dense
        self.bm25 = bm25
        self.info = info
        cal = info.get("calibration")
        self.calibration = confidence.Calibration.from_json(cal) if cal else None
        self.bm25_weight = float(info.get("fusion", {}).get("bm25_weight", 0.1))
        # coverage reads an FAQ answer in full (up to coverage.MAX_TOKENS), not its opening
        full = [entries[e].answer if kind == "answer" else text for e, kind, text in keys]
        self.tokens = coverage.KeyTokens(encoder, keys, full)
        # None: a KB built before coverage (its confidence does not read it)
        cov = info.get("coverage")
        self.coverage_weight: float | None = None if cov is None else float(cov["weight"])

    # -- search ---------------------------------------------------------------------------
    def search(
        self,
        question: str,
        mode: str = "fused",
        vector: np.ndarray | None = None,
        rescore: bool = True,
    ) -> list[retrieval.Candidate]:
        """Candidates, best first; the fused ranking's top is re-scored with coverage
        (``rescore=False``: as fused, for comparison)."""
        qtok = None
        if vector is None:
            vecs, toks = self.encoder.encode_tokens([question])
            vector, qtok = vecs[0], toks[0]
        cands = self.rank(*self.scores(question, vector), mode)
        if mode == "fused" and rescore and self.coverage_weight is not None:
            if qtok is None:
                qtok = self.encoder.encode_tokens([question])[1][0]
            cands = self.cover(cands, qtok)
        return cands

    def cover(
        self, cands: list[retrieval.Candidate], qtok: np.ndarray, exclude=None
    ) -> list[retrieval.Candidate]:
        return coverage.rescore(cands, qtok, self.tokens, self.coverage_weight or 0.0, exclude)

    def rank(self, dense, bm25, mode: str = "fused") -> list[retrieval.Candidate]:
        return retrieval.rank(dense, bm25, mode, weight=self.bm25_weight)

    def scores(
        self, question: str, vector: np.ndarray | None = None, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per entry: the best dense and the best BM25 score of its keys (-inf: not
        retrieved). ``exclude``: a boolean mask of keys left out, scored exactly (calibration
        and evaluation); without it the dense index answers (the live path)."""
        q = self.encoder.encode([question])[0] if vector is None else vector
        bm25_keys = self.bm25.scores(question)
        if exclude is None:
            rows, sims = self.dense.search(q, retrieval.DEPTH * 4)
            dense_keys = np.full(len(self.keys), -np.inf, dtype=np.float32)
            dense_keys[rows] = sims
        else:
            dense_keys = np.where(exclude, -np.inf, self.dense.vectors @ q).astype(np.float32)
            bm25_keys = np.where(exclude, 0.0, bm25_keys).astype(np.float32)
        n = len(self.entries)
        return (
            retrieval.per_entry(dense_keys, self.key_entry, n),
            retrieval.per_entry(bm25_keys, self.key_entry, n),
        )

    # -- files ------------------------------------------------------------------------------
    @staticmethod
    def load_info(folder: str | Path) -> dict:
        """The folder's kb.json, checked."""
        p = Path(folder)
        info_file = p / "kb.json"
        if not info_file.is_file():
            raise TunelabError(
                f"{p}: not a knowledge base (no kb.json); build one with `tunelab assistant build`"
            )
        info = json.loads(info_file.read_text(encoding="utf-8"))
        if info.get("format") != FORMAT:
            raise TunelabError(
                f"{p}: a knowledge base of format {info.get('format')!r}, not {FORMAT}"
            )
        return info

    @classmethod
    def load(cls, folder: str | Path, encoder: Encoder | None = None) -> KnowledgeBase:
        p = Path(folder)
        info = cls.load_info(p)
        entries = [
            Entry(**json.loads(line))
            for line in (p / "entries.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        keys = [
            tuple(json.loads(line))
            for line in (p / "keys.jsonl").read_text(encoding="utf-8").splitlines()
        ]
        mix = float(info.get("encoder", {}).get("mix", 1.0))
        enc = encoder or Encoder(info["model"], mix=mix)
        return cls(entries, keys, enc, DenseIndex.load(p), BM25Index.load(p), info)


def make_keys(entries: list[Entry]) -> list[tuple[int, str, str]]:
    keys: list[tuple[int, str, str]] = []
    for i, e in enumerate(entries):
        if e.kind == "faq":
            keys.append((i, "question", e.question))
            keys += [(i, "variant", v) for v in e.variants]
            keys.append((i, "answer", e.answer[:ANSWER_KEY_CHARS]))
        else:
            keys.append((i, "passage", f"{e.question}\n{e.answer}"))
    return keys


def build(
    entries: list[Entry],
    output: str | Path,
    model: str,
    sources: list[dict],
    validation: list[tuple[str, str | None]] | None = None,
    validation_source: str = "",
    target_precision: float = 0.9,
    overwrite: bool = False,
    encoder: Encoder | None = None,
    log=print,
    mix: float | None = None,
) -> KnowledgeBase:
    """Index ``entries``, calibrate the hand-off threshold, and write the KB folder.
    ``mix``: a fine-tuned retriever's share in weight space (``Encoder.set_mix``); None
    measures it on the calibration questions (up to ``MIX_SEARCH_KEYS`` keys, else 1)."""
    out = Path(output)
    if out.exists() and not overwrite:
        raise TunelabError(f"{out}: already exists (pass --overwrite to replace it)")
    if out.exists() and not (out / "kb.json").is_file():
        raise TunelabError(f"{out}: exists and is not a knowledge base; not replacing it")
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise TunelabError(f"id {dup!r} is used by two entries (FAQ ids and document passages)")
    t0 = time.perf_counter()
    if encoder is None:
        enc = Encoder(model, mix=1.0 if mix is None else mix, keep_mixing=mix is None)
    else:
        enc = encoder
        if mix is not None and mix != enc.mix:
            enc.set_mix(mix)
    keys = make_keys(entries)
    texts = [k[2] for k in keys]
    log(f"encoding {len(keys):,} keys of {len(entries):,} entries with {model}")
    vectors = enc.encode(texts)
    info: dict = {
        "format": FORMAT,
        "model": model_label(model),
        "precision": enc.precision,
        "sources": sources,
        "entries": len(entries),
        "faq_entries": sum(e.kind == "faq" for e in entries),
        "passages": sum(e.kind == "passage" for e in entries),
        "keys": len(keys),
        "index": {"dense": "exact", "bm25": "bm25s"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    kb = KnowledgeBase(entries, keys, enc, DenseIndex(vectors), BM25Index.build(texts), info)
    if kb.dense.hnsw is not None:
        info["index"]["dense"] = "faiss-hnsw"
    from tunelab.assistant import calibrate

    if mix is None and enc.mixable and len(keys) <= MIX_SEARCH_KEYS:
        log("measuring the fine-tuned encoder's mix with its base (1, 0.75, 0.5, 0.25)")
        info["encoder"] = calibrate.encoder_mix(
            kb, validation, lambda: DenseIndex(enc.encode(texts))
        )
        log(f"encoder mix {info['encoder']['mix']}")
    elif enc.mixable or enc.mix != 1.0:
        info["encoder"] = {"mix": enc.mix, "rule": "given" if mix is not None else "too many keys"}
    if encoder is None:
        enc.stop_mixing()  # the two fp32 weight sets (2.2 GB for Gemma) are done with
    cal = calibrate.calibrate(kb, validation, validation_source, target_precision, log)
    info["fusion"] = {"method": "convex", **cal.report.pop("fusion")}
    info["coverage"] = {"method": "maxsim", **cal.report.pop("coverage")}
    info["calibration"] = cal.as_json()
    kb.calibration = cal
    info["build_seconds"] = round(time.perf_counter() - t0, 1)
    _write(kb, out)
    return kb


def _write(kb: KnowledgeBase, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with (tmp / "entries.jsonl").open("w", encoding="utf-8") as f:
            for e in kb.entries:
                f.write(json.dumps(e.as_json(), ensure_ascii=False) + "\n")
        with (tmp / "keys.jsonl").open("w", encoding="utf-8") as f:
            for k in kb.keys:
                f.write(json.dumps(list(k), ensure_ascii=False) + "\n")
        kb.dense.save(tmp)
        kb.bm25.save(tmp)
        (tmp / "kb.json").write_text(
            json.dumps(kb.info, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_record(path: str | Path, kind: str, entries: int) -> dict:
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(f.read_bytes())
    else:
        h = hashlib.sha256(p.read_bytes())
    return {"path": str(p.resolve()), "kind": kind, "entries": entries, "sha256": h.hexdigest()}
