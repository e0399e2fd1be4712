"""Continual fine-tuning of the real MiniLM on BBC News topics arriving in two stages
(`make data-bbc`, built by `make test`): naive fine-tuning on the new topics forgets the old
ones, replay keeps them, and `tunelab evaluate --stages` reports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BBC = REPO / "data" / "bbc_topics"


def _subset(src: Path, dst: Path, n: int) -> Path:
    """The first ``n`` rows of each label of ``src`` (JSONL)."""
    rows = [json.loads(line) for line in src.read_text(encoding="utf-8").splitlines()]
    out, seen = [], {}
    for r in rows:
        if seen.get(r["label"], 0) < n:
            seen[r["label"]] = seen.get(r["label"], 0) + 1
            out.append(r)
    dst.write_text("".join(json.dumps(r) + "\n" for r in out), encoding="utf-8")
    return dst


def _tunelab(*args: str) -> str:
    exe = Path(sys.executable).parent / "tunelab"
    r = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return r.stdout


def _files(d: Path, stage: int) -> list[str]:
    args = []
    for split, n in (("train", 60), ("validation", 20), ("test", 25)):
        f = _subset(BBC / f"stage{stage}" / f"{split}.jsonl", d / f"s{stage}_{split}.jsonl", n)
        args += [f"--{split}", str(f)]
    return args


def test_replay_keeps_the_first_topics_where_naive_forgets_them(tmp_path):
    assert BBC.is_dir(), "data/bbc_topics is built by `make data-bbc` (a prerequisite of make test)"
    common = ["--no-progress", "--report-to", "none", "--epochs", "2"]
    s1 = tmp_path / "s1"
    _tunelab(
        "train", "--model", "minilm-l6", "--max-length", "64", "--batch-size", "16",
        *_files(tmp_path, 1), "--output-dir", str(s1), *common,
    )  # fmt: skip
    scores = {}
    for strategy in ("naive", "replay"):
        out = tmp_path / strategy
        _tunelab(
            "train", "--continue-from", str(s1), "--continual", strategy,
            *_files(tmp_path, 2), "--output-dir", str(out), *common,
        )  # fmt: skip
        scores[strategy] = json.loads(_tunelab("evaluate", "--model-dir", str(out), "--stages"))
    first = {k: v["stages"][0] for k, v in scores.items()}
    assert first["naive"]["accuracy_when_trained"] >= 0.9  # stage 1 learnt its two topics
    assert first["naive"]["accuracy"] < 0.5  # ...and naive fine-tuning on two others forgets
    assert first["replay"]["accuracy"] >= 0.8  # replay keeps them
    for v in scores.values():
        assert v["stages"][1]["accuracy"] >= 0.85  # both learn the new topics
        assert [s["labels"] for s in v["stages"]] == [
            ["business", "entertainment"],
            ["politics", "sports"],
        ]
