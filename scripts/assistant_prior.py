"""Write the assistant's reference calibration questions (``src/tunelab/assistant/priors/``):
for each encoder alias, its reference FAQs' dev questions asked of a KB calibrated on them, as
features, right and in-scope (``tunelab.assistant.prior``). A KB built without
``--validation`` fits its hand-off confidence on these.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/assistant_prior.py [--encoder minilm-l6 ...]

The Python FAQ is extracted by ``make data-faq``; the other FAQs are committed. Only the dev
halves are read: the test halves stay for bench/assistant.py.
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

# encoder alias -> its reference FAQs and evaluation sets (the dev half of each)
REFERENCES = {
    "minilm-l6": [
        ("data/faq/python_faq.jsonl", "data/assistant/python_faq_eval.jsonl"),
        ("data/assistant/en_shop_faq.jsonl", "data/assistant/en_shop_faq_eval.jsonl"),
    ],
    "gemma3-270m": [
        ("data/assistant/zh_shop_faq.jsonl", "data/assistant/zh_shop_faq_eval.jsonl"),
    ],
}

LANGUAGE = {"minilm-l6": "en", "gemma3-270m": "zh"}  # what the reference questions are asked in


def dev_questions(path: Path) -> list[tuple[str, str | None]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [(r["question"], r["faq_id"]) for r in rows if r["split"] == "dev"]


def reference_rows(faq: Path, evalset: Path, encoder: str, log) -> tuple[list, dict]:
    """One reference FAQ's rows and its record, from a KB calibrated on its dev half."""
    from tunelab.assistant import kb as kbmod
    from tunelab.assistant import prior
    from tunelab.assistant.sources import read_faq

    entries = read_faq(faq)
    dev = dev_questions(evalset)
    with tempfile.TemporaryDirectory() as tmp:
        kb = kbmod.build(
            entries, Path(tmp) / "kb", encoder, [], validation=dev, validation_source="dev",
            log=log,
        )  # fmt: skip
        rows = prior.measure(kb, dev)
    record = {
        "faq": faq.name,
        "eval": f"{evalset.name} (dev)",
        "questions": len(rows),
        "in_scope": sum(r[2] for r in rows),
        "bm25_weight": kb.bm25_weight,
        "coverage_weight": kb.coverage_weight,
        "precision": kb.encoder.precision,
    }
    return rows, record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", nargs="+", choices=sorted(REFERENCES), default=sorted(REFERENCES))
    a = ap.parse_args()
    from tunelab import machine
    from tunelab.assistant import prior, retrieval

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    prior.FOLDER.mkdir(exist_ok=True)
    for encoder in a.encoder:
        rows, sources = [], []
        for faq, evalset in REFERENCES[encoder]:
            if not (ROOT / faq).is_file():
                raise SystemExit(f"{faq}: missing; run `make data-faq` first")
            r, rec = reference_rows(ROOT / faq, ROOT / evalset, encoder, log)
            rows += r
            sources.append(rec)
        out = prior.FOLDER / f"{encoder}.json"
        doc = {
            "encoder": encoder,
            "language": LANGUAGE[encoder],
            "features": list(retrieval.FEATURES),
            "sources": sources,
            "made": time.strftime("%Y-%m-%d"),
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python scripts/assistant_prior.py",
            "machine": {k: machine.describe()[k] for k in ("cpu", "flags")},
            "rows": rows,
        }
        out.write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{out.relative_to(ROOT)}: {len(rows)} questions from {len(sources)} FAQs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
