"""Music generation, measured: the VAE and the GAN trained on the whole Essen collection (inside
music21) against the Markov-chain and random baselines, fine-tuning to a style (O'Neill's Irish
tunes) over 3 seeds, and the time from a chat request to a finished MIDI + WAV.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/music.py --out bench/results/music.json
    (stages: --stages prepare,vae,gan,evaluate,style,latency,attributes,samples; each adds
    its part to --out; evaluate measures the trained models again)

Everything runs as a user would run it: `tunelab music prepare | train | generate` processes.
Samples for the measures are drawn from the prior at temperature 1 and not filtered; the
held-out windows are the data set's test split (pieces never trained on). The style distance is
the pitch-class plus the note-duration histogram distance (total variation) of a model's samples
to the style's held-out windows; fine-tuning must cut it by 20% or more.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))

from tunelab.machine import describe as describe_machine  # noqa: E402

WORK = ROOT / "build" / "music"
DOCS = ROOT / "docs" / "music"


def run(args: list[str]) -> tuple[dict | list, float]:
    cmd = [str(BIN / "tunelab"), *args]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout), time.perf_counter() - t0


def prepare(source: str) -> Path:
    out = WORK / source
    if not (out / "dataset.json").is_file():
        summary, seconds = run(["music", "prepare", "--source", source, "--output-dir", str(out)])
        print(f"prepared {source}: {summary} in {seconds:.0f} s", flush=True)
    return out


def train(kind: str, data: Path, out: Path, extra: list[str]) -> dict:
    _, seconds = run(["music", "train", "--data", str(data), "--model", kind, "--output-dir",
                      str(out), "--overwrite", *extra])  # fmt: skip
    record = json.loads((out / "music.json").read_text())
    record["process_seconds"] = seconds
    return record


def style_distance(row: dict) -> float:
    return row["pitch_class_distance"] + row["duration_distance"]


def evaluate(model: Path, data: Path, seed: int, samples: int = 1000) -> dict:
    report, _ = run(["music", "evaluate", "--model", str(model), "--data", str(data),
                     "--samples", str(samples), "--seed", str(seed)])  # fmt: skip
    assert isinstance(report, dict)
    return report


def stage_models(results: dict, minutes: dict[str, float]) -> None:
    essen = prepare("essen")
    for kind in ("vae", "gan"):
        if kind not in minutes:
            continue
        rec = train(kind, essen, WORK / f"{kind}-essen", ["--max-minutes", str(minutes[kind])])
        results[kind] = {
            "training_seconds": rec["training"]["seconds"],
            "epochs": rec["training"]["epochs_run"],
            "process_seconds": rec["process_seconds"],
            "config": rec["config"],
            "training": {k: v for k, v in rec["training"].items() if k != "last"},
            "metrics": rec["metrics"],
        }
        print(json.dumps({kind: results[kind]["metrics"]["rows"]}, indent=1), flush=True)


def stage_style(results: dict, seeds: list[int], minutes: float) -> None:
    style = prepare("oneill")
    base = WORK / "vae-essen"
    rows = []
    for seed in seeds:
        before = evaluate(base, style, seed)["rows"]["vae"]
        out = WORK / f"vae-oneill-{seed}"
        rec = train("vae", style, out, ["--init", str(base), "--seed", str(seed),
                                        "--max-minutes", str(minutes)])  # fmt: skip
        after = evaluate(out, style, seed)["rows"]["vae"]
        row = {
            "seed": seed,
            "before": style_distance(before),
            "after": style_distance(after),
            "cut": 1 - style_distance(after) / style_distance(before),
            "two_sample_before": before["two_sample_accuracy"],
            "two_sample_after": after["two_sample_accuracy"],
            "fine_tune_seconds": rec["training"]["seconds"],
            "epochs": rec["training"]["epochs_run"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    results["style"] = {
        "style": "oneill",
        "pretrained_on": "essen",
        "runs": rows,
        "mean_cut": statistics.mean(r["cut"] for r in rows),
        "min_cut": min(r["cut"] for r in rows),
    }


def stage_latency(results: dict) -> None:
    """A chat request to a finished MIDI + WAV, as `tunelab chat` serves it once the model is
    loaded (arguments from the request, compose, render), and a cold `tunelab music generate`
    process (start-up, loading, composing, rendering)."""
    import os

    os.environ["TUNELAB_MUSIC_DIR"] = str(WORK / "latency")
    from tunelab.functions.router import fill_arguments
    from tunelab.music.compose import compose
    from tunelab.music.model import load_music_model

    model = load_music_model(WORK / "vae-essen")
    requests = [
        "play me something calm in D minor",
        "来一段欢快的C大调钢琴曲，8小节",
        "write a sad tune on the violin, 16 bars",
        "compose an energetic theme at 140 bpm",
    ]
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        args = fill_arguments("compose_music", requests[i % len(requests)])
        compose(model, WORK / "latency", seed=i, **args)
        times.append(time.perf_counter() - t0)
    _, cold = run(["music", "generate", "--model", str(WORK / "vae-essen"), "--output-dir",
                   str(WORK / "latency-cold"), "--mood", "calm", "--bars", "8"])  # fmt: skip
    times.sort()
    results["latency"] = {
        "requests": len(times),
        "p50_seconds": times[len(times) // 2],
        "max_seconds": times[-1],
        "cold_process_seconds": cold,
    }
    print(json.dumps(results["latency"]), flush=True)


def stage_attributes(results: dict) -> None:
    """What adding an attribute vector does to 500 prior samples (temperature 1, one seed):
    note starts per bar, mean pitch, and the share of windows whose best-fitting scale is
    minor."""
    import numpy as np

    from tunelab.music import metrics
    from tunelab.music.encoding import notes_of
    from tunelab.music.model import load_music_model

    vae = load_music_model(WORK / "vae-essen")

    def stats(ws: list[list[int]]) -> dict:
        return {
            "notes_per_bar": float(np.mean([metrics.note_density(w) for w in ws])),
            "mean_pitch": float(np.mean([np.mean([p for p, _, _ in notes_of(w)]) for w in ws])),
            "minor_share": float(np.mean([metrics.best_scale(w)[1] == "minor" for w in ws])),
        }

    out = {"none": stats(vae.sample(500, 1.0, 0))}
    for name in ("density", "register", "minor"):
        for amount in (-1.5, 1.5):
            out[f"{name}{amount:+g}"] = stats(vae.sample(500, 1.0, 0, shifts={name: amount}))
    results["attributes"] = out
    print(json.dumps(out, indent=1), flush=True)


def stage_samples() -> None:
    """A few files for the README: composed melodies (MIDI, a short WAV, the piano roll) and an
    interpolation, under docs/music/."""
    from tunelab.music import encoding, render
    from tunelab.music.compose import compose
    from tunelab.music.model import load_music_model

    DOCS.mkdir(parents=True, exist_ok=True)
    vae = load_music_model(WORK / "vae-essen")
    for name, mood, key, bars in (("calm-d-minor", "calm", "D minor", 8),
                                  ("cheerful-g-major", "cheerful", "G major", 4)):  # fmt: skip
        c = compose(vae, WORK / "samples", mood, key, bars, seed=7)
        for src, ext in ((c.midi, "mid"), (c.wav, "wav"), (c.png, "png")):
            if ext != "wav" or bars <= 4:  # one short WAV is enough to listen to
                shutil.copy(src, DOCS / f"{name}.{ext}")
    gan = load_music_model(WORK / "gan-essen")
    c = compose(gan, WORK / "samples", "cheerful", "F major", 4, seed=7)
    shutil.copy(c.png, DOCS / "gan-cheerful-f-major.png")
    shutil.copy(c.midi, DOCS / "gan-cheerful-f-major.mid")
    from tunelab.music.data import load, windows_of

    _, parts = load(str(WORK / "essen"))
    test = windows_of(parts["test"], 2)
    path = vae.interpolate(test[0], test[40], 5)
    notes = encoding.notes_of([t for w in path for t in w])
    render.render(notes, DOCS / "interpolation", 100, "piano", "interpolation, 5 points",
                  formats=("mid", "png"))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "bench/results/music.json"))
    p.add_argument("--stages", default="prepare,vae,gan,style,latency,attributes,samples")
    p.add_argument("--vae-minutes", type=float, default=14)
    p.add_argument("--gan-minutes", type=float, default=10)
    p.add_argument("--style-minutes", type=float, default=2)
    p.add_argument("--seeds", default="1,2,3")
    a = p.parse_args()
    stages = a.stages.split(",")
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results["machine"] = describe_machine()
    save = lambda: out.write_text(json.dumps(results, indent=1) + "\n")  # noqa: E731
    if "prepare" in stages:
        prepare("essen")
        prepare("oneill")
    minutes = {k: v for k, v in (("vae", a.vae_minutes), ("gan", a.gan_minutes)) if k in stages}
    if minutes:
        stage_models(results, minutes)
        save()
    if "evaluate" in stages:  # measure trained models again (after a change to the measures)
        for kind in ("vae", "gan"):
            if (WORK / f"{kind}-essen" / "music.json").is_file():
                metrics = evaluate(WORK / f"{kind}-essen", WORK / "essen", 0)
                results.setdefault(kind, {})["metrics"] = metrics
        save()
    if "style" in stages:
        stage_style(results, [int(s) for s in a.seeds.split(",")], a.style_minutes)
        save()
    if "latency" in stages:
        stage_latency(results)
        save()
    if "attributes" in stages:
        stage_attributes(results)
        save()
    if "samples" in stages:
        stage_samples()
    save()


if __name__ == "__main__":
    main()
