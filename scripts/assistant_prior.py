"""Write the assistant's reference calibration questions (``src/tunelab/assistant/priors/``):
for each encoder alias, its reference FAQs' dev questions asked of a KB calibrated on them, as
features, right and in-scope (``tunelab.assistant.prior``). A KB built without
``--validation`` fits its hand-off confidence on these.

Two sets per encoder: ``pretrained`` (the alias itself) and ``fine_tuned`` (a retriever
fine-tuned from it on each reference FAQ, ``tunelab assistant tune`` with the evaluation
questions excluded, as a user tunes one on their FAQ): a fine-tuned encoder scores unlike its
base (pretrained Gemma's mean-pooled vectors barely rank at all).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/assistant_prior.py [--encoder minilm-l6 ...]
        [--work /tmp/benchassist]

The reference FAQs, their encoders and the retrievers' training are bench/assistant.py's
(``SETS``, ``MODELS``, ``tuned_retriever``), and the retrievers are shared with it in
``--work`` (trained once, about 4 minutes each on two cores). The Python FAQ is extracted by
``make data-faq``; the other FAQs are committed. Only the dev halves are read: the test halves
stay for the benchmark.
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
sys.path.insert(0, str(ROOT))
from bench.assistant import MODELS, SETS, load_eval, tuned_retriever  # noqa: E402

# encoder alias -> the benchmark's FAQ sets it reads (their dev halves are the reference)
REFERENCES = {enc: [lang for lang in SETS if MODELS[lang] == enc] for enc in set(MODELS.values())}


def reference_rows(lang: str, encoder: str, log) -> tuple[list, dict, str]:
    """One reference FAQ's rows, its record and its language, from a KB calibrated on its dev
    half."""
    from tunelab.assistant import kb as kbmod
    from tunelab.assistant import prior
    from tunelab.assistant.sources import read_faq

    faq, evalset = SETS[lang]
    if not faq.is_file():
        raise SystemExit(f"{faq}: missing; run `make data-faq` first")
    entries = read_faq(faq)
    dev = load_eval(evalset)["dev"]
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
    return rows, record, prior.language(entries)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", nargs="+", choices=sorted(REFERENCES), default=sorted(REFERENCES))
    ap.add_argument(
        "--work", default="/tmp/benchassist", help="where the retrievers are (bench/assistant.py's)"
    )
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
        languages = set()
        for kind in ("pretrained", "fine_tuned"):
            rows, sources = [], []
            for lang in REFERENCES[encoder]:
                model = encoder if kind == "pretrained" else tuned_retriever(lang, work, log)[0]
                r, rec, language = reference_rows(lang, model, log)
                rows += r
                sources.append(rec)
                languages.add(language)
            sets[kind] = {"sources": sources, "rows": rows}
        (language,) = languages  # one language per encoder's reference FAQs
        out = prior.FOLDER / f"{encoder}.json"
        doc = {
            "encoder": encoder,
            "language": language,
            "features": list(retrieval.FEATURES),
            "made": time.strftime("%Y-%m-%d"),
            "command": "HF_HUB_OFFLINE=1 .venv/bin/python scripts/assistant_prior.py",
            "machine": {k: machine.describe()[k] for k in ("cpu", "flags")},
            "tune": "bench/assistant.py's tuned_retriever",
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
