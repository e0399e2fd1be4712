"""A replay scenario from the bundled real reviews: a baseline stream (about one post in seven
negative) with, at positions drawn from the seed, a burst of negative posts, a spike in volume
and a burst of complaints about one entity (the seed draws it too: 12 to 16 negative reviews
naming it per window, reposts included, in place of the window's other negative posts, so the
volume and the negative share stay near usual and each burst tests its own rule).

The texts are the held-out splits (validation and test), which no bundled run trains on, so the
models read posts they have not seen, as a monitor does. The entity burst takes the held-out
negative reviews naming its entity and, where there are fewer than 10 (English: Disney, Bond),
tops them up from the training split; the truth file says how many came from each.

    tunelab monitor make-stream --lang en --seed 3 --out posts.jsonl

writes the posts (JSONL: id, text, time, source) and ``posts.truth.json`` (where each burst is),
which the tests and ``bench/monitor.py`` score the alerts against.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tunelab.errors import TunelabError

BUNDLED = Path(__file__).resolve().parents[3] / "data"
SETS = {"en": "en_sentiment", "zh": "zh_sentiment"}
# keywords of the shipped rule file (configs/monitor/rules.yaml): names the reviews use
ENTITIES = {"en": ["Hollywood", "Disney", "Bond"], "zh": ["京东", "当当", "三星"]}
START = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


HELD_OUT = ("validation", "test")
MIN_ABOUT = 10  # the fewest reviews naming the entity a burst draws from


def _reviews(lang: str, splits: tuple[str, ...] = HELD_OUT) -> dict[str, list[str]]:
    pool: dict[str, list[str]] = {"negative": [], "positive": []}
    for split in splits:
        with open(BUNDLED / SETS[lang] / f"{split}.csv", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                pool[row["label"]].append(row["text"])
    return pool


def make_stream(
    out: str | Path,
    lang: str = "en",
    seed: int = 0,
    windows: int = 48,
    window_s: int = 300,
    per_window: tuple[int, int] = (40, 60),
    entities: list[str] | None = None,
) -> dict:
    """Write the scenario; returns its truth (burst positions in windows and seconds).
    ``entities``: the names the entity burst draws from (default: the shipped rule file's)."""
    rng = random.Random(seed)
    pool = _reviews(lang)
    entity = rng.choice(entities or ENTITIES[lang])
    from tunelab.monitor.engine import KeywordEntities

    names = KeywordEntities({entity: [entity]})  # as the rule file's keyword list matches it
    about = [t for t in pool["negative"] if names(t)]
    held_out = len(about)
    if not about and not names(" ".join(_reviews(lang, ("train",))["negative"])):
        raise TunelabError(f"no negative {lang} review names {entity!r}: pick another entity")
    if held_out < MIN_ABOUT:  # topped up, in file order, from the training split
        about += [t for t in _reviews(lang, ("train",))["negative"] if names(t)][
            : MIN_ABOUT - held_out
        ]
    # three bursts, apart from each other and from the first 12 windows (the baselines)
    slots = rng.sample(range(14, windows - 6, 7), 3)
    negative, spike, mention = sorted(slots) if rng.random() < 0.5 else slots
    length = {k: rng.randint(2, 3) for k in ("negative", "spike", "mention")}
    starts = {"negative": negative, "spike": spike, "mention": mention}

    def inside(kind: str, w: int) -> bool:
        return starts[kind] <= w < starts[kind] + length[kind]

    lines, n = [], 0
    for w in range(windows):
        volume = rng.randint(*per_window) * (4 if inside("spike", w) else 1)
        neg_share = 0.85 if inside("negative", w) else 0.15
        labels = ["negative" if rng.random() < neg_share else "positive" for _ in range(volume)]
        posts = [rng.choice(pool[label]) for label in labels]
        if inside("mention", w):
            # complaints about the entity in place of the window's other negative posts, so
            # neither the volume nor the negative share looks like the other two bursts
            named = rng.choices(about, k=rng.randint(12, 16))  # reposts included
            others = [i for i, label in enumerate(labels) if label == "negative"][: len(named)]
            posts = [p for i, p in enumerate(posts) if i not in set(others)] + named
        for text in posts:
            t = START + timedelta(seconds=w * window_s + rng.uniform(0, window_s))
            lines.append((t, text))
    lines.sort(key=lambda x: x[0])
    with open(out, "w", encoding="utf-8") as f:
        for t, text in lines:
            n += 1
            post = {
                "id": f"{lang}-{seed}-{n}",
                "text": text,
                "time": t.isoformat(),
                "source": "reviews",
            }
            f.write(json.dumps(post, ensure_ascii=False) + "\n")
    truth = {
        "lang": lang,
        "seed": seed,
        "posts": n,
        "window_s": window_s,
        "start": START.isoformat(),
        "entity": entity,
        "entity_texts": {"held_out": held_out, "train": len(about) - held_out},
        "splits": list(HELD_OUT),
        "bursts": {
            k: {
                "first_window": starts[k],
                "windows": length[k],
                "start_s": START.timestamp() + starts[k] * window_s,
                "end_s": START.timestamp() + (starts[k] + length[k]) * window_s,
            }
            for k in starts
        },
    }
    Path(f"{Path(out).with_suffix('')}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth
