"""What checking a run folder costs at load: time and peak memory of `tunelab.load` on a
MiniLM run, side by side with the way Transformers loads the same folder (memory-mapped, no
checks: the reference) and with our in-memory reader without checksums.

Each variant runs in a fresh process, several times, alternating. What every variant needs
besides the weights comes first, unmeasured (imports, the model's code, a tokenizer); then the
peak RSS is reset (/proc/self/clear_refs) and the load is timed; reported: its wall time, and
the peak RSS growth as a multiple of the weights file's size at the end of the load and after
one prediction (which touches every page of a memory-mapped file).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/load_integrity.py --run runs/demo --repeats 7 \\
        --out bench/results/load_integrity.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.report import emit  # noqa: E402
from bench.startup import cpu  # noqa: E402

PROBE = r"""
import json, sys, time
variant, folder = sys.argv[1], sys.argv[2]
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import torch, transformers, tunelab, tunelab.inference, tunelab.tasks
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from tunelab.models.hf import quiet_transformers
quiet_transformers()
# what every variant needs besides the weights, done first: the model's code and a tokenizer
AutoTokenizer.from_pretrained(folder)
with torch.device("meta"):
    AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS")
t = time.perf_counter()
if variant == "transformers":
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    seconds = time.perf_counter() - t
    at_load = status("VmHWM") - before
    with torch.no_grad():
        model(**tok(["a fine film"], return_tensors="pt"))
else:
    m = tunelab.load(folder)
    seconds = time.perf_counter() - t
    at_load = status("VmHWM") - before
    m.predict("a fine film")
after = status("VmHWM") - before
print(json.dumps({"seconds": seconds, "at_load": at_load, "after_predict": after}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/demo", help="a full fine-tuning MiniLM run")
    ap.add_argument("--work", default="/tmp/tunelab-load-integrity")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out")
    a = ap.parse_args()
    from tunelab.runs import read_run, write_run

    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    checked = Path(shutil.copytree(a.run, work / "checked"))
    write_run(checked, read_run(checked))  # records the checksums (an older run has none)
    unchecked = Path(shutil.copytree(checked, work / "unchecked"))
    meta = json.loads((unchecked / "tunelab.json").read_text())
    meta.pop("files")
    (unchecked / "tunelab.json").write_text(json.dumps(meta))
    weights = (checked / "model.safetensors").stat().st_size
    variants = {
        "transformers from_pretrained, memory-mapped (reference)": ("transformers", checked),
        "tunelab.load, in memory, no checksums": ("tunelab", unchecked),
        "tunelab.load, in memory, every file checked": ("tunelab", checked),
    }
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    for _ in range(a.repeats):
        for name, (kind, folder) in variants.items():
            r = subprocess.run(
                [sys.executable, "-c", PROBE, kind, str(folder)],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if r.returncode:
                sys.exit(r.stderr[-2000:])
            runs[name].append(json.loads(r.stdout.strip().splitlines()[-1]))
    rows = []
    for name, rs in runs.items():
        rows.append(
            {
                "variant": name,
                "load_s_median": statistics.median(x["seconds"] for x in rs),
                "peak_at_load_x_weights": statistics.median(x["at_load"] for x in rs) / weights,
                "peak_after_first_prediction_x_weights": statistics.median(
                    x["after_predict"] for x in rs
                )
                / weights,
            }
        )
    ref = rows[0]["load_s_median"]
    for r in rows:
        r["load_time_ratio"] = r["load_s_median"] / ref
    result = {
        "command": " ".join(sys.argv),
        "cpu": cpu(),
        "weights_mb": weights / 1e6,
        "repeats": a.repeats,
        "checking_cost": rows[2]["load_s_median"] / rows[1]["load_s_median"] - 1,
        "rows": rows,
    }
    emit(result, a.out)


if __name__ == "__main__":
    main()
