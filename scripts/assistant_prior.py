"""Write the assistant's reference calibration questions (``src/tunelab/assistant/priors/``):
for each encoder alias, its reference FAQs' dev questions asked of a KB calibrated on them, as
features, right and in-scope (``tunelab.assistant.prior``). A KB built without
``--validation`` fits its hand-off confidence on these.

Two sets per encoder: ``pretrained`` (the alias itself) and ``fine_tuned`` (a retriever
fine-tuned from it on each reference FAQ, ``tunelab assistant tune`` with the evaluation
questions excluded, as a user tunes one on their FAQ): a fine-tuned encoder scores unlike its
base (pretrained Gemma's mean-pooled vectors barely rank at all).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/assistant_prior.py [--encoder minilm-l6 ...]
        [--work /tmp/assistant-prior]

The retrievers are trained into ``--work`` (reused when there; about 4 minutes each on two
cores). The Python FAQ is extracted by ``make data-faq``; the other FAQs are committed. Only the
dev halves are read: the test halves stay for bench/assistant.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
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
# the retriever's training, as bench/assistant.py trains it
TUNE = {
    "minilm-l6": ["--epochs", "3", "--batch-size", "32"],
    "gemma3-270m": [
        "--method",
        "lora",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--max-length",
        "96",
    ],
}


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
        "mix": kb.encoder.mix,
        "precision": kb.encoder.precision,
    }
    return rows, record


def tuned(encoder: str, faq: Path, evalset: Path, work: Path, log) -> str:
    """A retriever fine-tuned from ``encoder`` on ``faq`` (its evaluation questions excluded),
    trained into ``work`` once."""
    out = work / f"{encoder}-{faq.stem}"
    if (out / "tunelab.json").is_file():
        return str(out)
    cmd = [
        str(Path(sys.executable).parent / "tunelab"), "assistant", "tune", "--faq", str(faq),
        "--model", encoder, "--output", str(out), "--exclude", str(evalset), *TUNE[encoder],
        "--overwrite",
    ]  # fmt: skip
    log("training: " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return str(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", nargs="+", choices=sorted(REFERENCES), default=sorted(REFERENCES))
    ap.add_argument("--work", default="/tmp/assistant-prior", help="where retrievers are trained")
    a = ap.parse_args()
    from tunelab import machine
    from tunelab.assistant import prior, retrieval

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    prior.FOLDER.mkdir(exist_ok=True)
    for encoder in a.encoder:
        sets: dict[str, dict] = {}
        for kind in ("pretrained", "fine_tuned"):
            rows, sources = [], []
            for faq, evalset in REFERENCES[encoder]:
                if not (ROOT / faq).is_file():
                    raise SystemExit(f"{faq}: missing; run `make data-faq` first")
                model = encoder
                if kind == "fine_tuned":
                    model = tuned(encoder, ROOT / faq, ROOT / evalset, work, log)
                r, rec = reference_rows(ROOT / faq, ROOT / evalset, model, log)
                rows += r
                sources.append(rec)
            sets[kind] = {"sources": sources, "rows": rows}
        out = prior.FOLDER / f"{encoder}.json"
        doc = {
            "encoder": encoder,
            "language": LANGUAGE[encoder],
            "features": list(retrieval.FEATURES),
            "made": time.strftime("%Y-%m-%d"),
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python scripts/assistant_prior.py",
            "machine": {k: machine.describe()[k] for k in ("cpu", "flags")},
            "tune": TUNE[encoder],
            **sets,
        }
        out.write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
        print(
            f"{out.relative_to(ROOT)}: "
            + ", ".join(f"{k} {len(v['rows'])}" for k, v in sets.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
