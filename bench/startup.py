"""Start-up cost: `tunelab.load` + first prediction, and `tunelab serve` until ready.

Each sample runs in a fresh Python process, with one tunelab source tree put first on
PYTHONPATH; two trees ("before" and "after", e.g. the code before and after a refactor) are
measured in turns (before, after, after, before, ...) so that drift on a shared machine hits
both alike:

1. load: `import tunelab; m = tunelab.load(RUN); m.predict(["a text"])`. Reported: the time of
   `import tunelab` + `tunelab.load`, of the first `predict`, their sum, the whole process
   (interpreter start to exit), its peak memory, the number of modules in `sys.modules`, and
   which heavy modules got imported (tunelab.training, matplotlib, optuna, ...).
2. serve: `python -m tunelab serve --model m=RUN --port P` (no API key file: open on
   localhost). Reported: seconds until /healthz answers, until /readyz answers 200 (the model
   is loaded), the first POST /v1/models/NAME/predict, and the server's resident memory
   (VmRSS) when ready and after that prediction; then the server is terminated.

Bytecode is cached under /tmp/tunelab-startup-pycache (PYTHONPYCACHEPREFIX), so no tree gets
__pycache__ folders written into it; one warm-up round per tree (not counted) fills it.
Each sample also records the 1-minute load average: with another process busy on a core,
torch's intra-op threads wait on each other and a first predict of 0.014 s takes ~0.45 s, so
compare the minimums as well as the medians.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/startup.py --before ../baseline/src \\
        --run /tmp/tunelab-startup-run --repeats 5 --out bench/results/startup.json

`--after` defaults to this checkout's src; `--after none` measures the --before tree alone.
Without an existing `--run` folder, a small run (MiniLM-L6, LoRA, 200 training examples, 1
epoch) is first trained into it with the --before tree, so both trees load the old format.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HEAVY = [
    "tunelab.training",
    "tunelab.evaluation",
    "matplotlib",
    "tensorboard",
    "optuna",
    "mlflow",
    "pandas",
    "sklearn",
    "datasets",
    "onnxruntime",
    "peft",
    "accelerate",
]
CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import tunelab
m = tunelab.load(sys.argv[1])
t1 = time.perf_counter()
m.predict(["a text"])
t2 = time.perf_counter()
print(json.dumps({"import_load_s": t1 - t0, "predict_s": t2 - t1, "total_s": t2 - t0,
    "modules": len(sys.modules), "tunelab_file": tunelab.__file__,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "imported": {k: k in sys.modules for k in sys.argv[2].split(",")},
    "tunelab_modules": sorted(k for k in sys.modules if k.startswith("tunelab"))}))
"""
METRICS = [  # (key, label in the table, format)
    ("total_s", "load: import + load + first predict (s)", "{:.2f}"),
    ("import_load_s", "load: import tunelab + tunelab.load (s)", "{:.2f}"),
    ("predict_s", "load: first predict (s)", "{:.3f}"),
    ("process_s", "load: whole process (s)", "{:.2f}"),
    ("modules", "load: modules in sys.modules", "{:.0f}"),
    ("peak_rss_mb", "load: peak memory (MB)", "{:.0f}"),
    ("healthz_s", "serve: /healthz answers (s)", "{:.2f}"),
    ("ready_s", "serve: /readyz 200 (s)", "{:.2f}"),
    ("first_request_s", "serve: first predict request (s)", "{:.3f}"),
    ("rss_ready_mb", "serve: VmRSS when ready (MB)", "{:.0f}"),
    ("rss_predict_mb", "serve: VmRSS after a prediction (MB)", "{:.0f}"),
]


def cpu() -> dict:
    """The CPU, in the shape the results have always had (flags: tunelab.machine's list)."""
    from tunelab import machine

    return {
        "model": machine.cpu_name(),
        "cores": os.cpu_count(),
        "flags": [f for f in machine.KNOWN if f in machine.detected_flags()],
    }


def env_for(src: str) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": src,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPYCACHEPREFIX": "/tmp/tunelab-startup-pycache",
    }


def build_run(run: Path, src: str) -> None:
    data = ROOT / "data/en_sentiment"
    cmd = [
        PY,
        "-m",
        "tunelab",
        "train",
        "--model",
        "minilm-l6",
        "--train",
        str(data / "train.csv"),
        "--validation",
        str(data / "validation.csv"),
        "--max-train-examples",
        "200",
        "--max-eval-examples",
        "100",
        "--epochs",
        "1",
        "--method",
        "lora",
        "--output-dir",
        str(run),
        "--no-progress",
        "--report-to",
        "none",
    ]
    print(f"building {run} with {src}:\n  {shlex.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, env=env_for(src), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def load_once(src: str, run: Path) -> dict:
    t0 = time.perf_counter()
    r = subprocess.run(
        [PY, "-c", CHILD, str(run), ",".join(HEAVY)],
        env=env_for(src),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"load failed with {src}:\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.splitlines()[-1])
    if not out["tunelab_file"].startswith(str(Path(src).resolve())):
        sys.exit(f"imported {out['tunelab_file']}, not the tree {src}")
    return {**out, "process_s": wall, "loadavg_1min": os.getloadavg()[0]}


def http(url: str, body: dict | None = None) -> int | None:
    """The status code, or None when nothing answers (or an error status)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except OSError:  # refused, timed out, or an HTTPError such as /readyz's 503
        return None


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def serve_once(src: str, run: Path, timeout: float = 300) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base, out = f"http://127.0.0.1:{port}", {}
    log = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "tunelab", "serve", "--model", f"m={run}", "--port", str(port)],
        env=env_for(src),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        while "ready_s" not in out:
            if proc.poll() is not None or time.perf_counter() - t0 > timeout:
                log.seek(0)
                sys.exit(f"server with {src} not ready:\n{log.read()[-3000:].decode()}")
            for key, path in (("healthz_s", "/healthz"), ("ready_s", "/readyz")):
                if key not in out and http(base + path) == 200:
                    out[key] = time.perf_counter() - t0
            time.sleep(0.05)
        out["rss_ready_mb"] = rss_mb(proc.pid)
        t1 = time.perf_counter()
        status = http(base + "/v1/models/m/predict", {"inputs": ["a text"]})
        out["first_request_s"] = time.perf_counter() - t1
        if status != 200:
            sys.exit(f"predict request with {src} answered {status}")
        out["rss_predict_mb"] = rss_mb(proc.pid)
        out["peak_rss_mb_server"] = rss_mb(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--run",
        default="/tmp/tunelab-startup-run",
        help="run folder to load; trained there first if it does not exist",
    )
    ap.add_argument("--before", help="source tree (the folder holding tunelab/) to compare from")
    ap.add_argument(
        "--after",
        default=str(ROOT / "src"),
        help="source tree to compare to (default: this checkout's src; 'none' to "
        "measure --before alone)",
    )
    ap.add_argument("--repeats", type=int, default=5, help="counted samples per tree and kind")
    ap.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (default 1)")
    ap.add_argument(
        "--out",
        default=str(ROOT / "bench/results/startup.json"),
        help="JSON results (default bench/results/startup.json)",
    )
    a = ap.parse_args()
    trees = {
        k: str(Path(v).resolve())
        for k, v in (("before", a.before), ("after", a.after))
        if v and v != "none"
    }
    if not trees:
        ap.error("give --before and/or --after")
    command = shlex.join([os.path.relpath(PY), *sys.argv])
    print(command, file=sys.stderr)
    run = Path(a.run).resolve()
    if not run.exists():
        build_run(run, next(iter(trees.values())))
    samples: dict[str, list[dict]] = {k: [] for k in trees}
    for i in range(a.warmup + a.repeats):
        order = list(trees) if i % 2 == 0 else list(trees)[::-1]
        row = {k: load_once(trees[k], run) for k in order}
        for k in order:
            row[k].update(serve_once(trees[k], run))
            if i >= a.warmup:
                samples[k].append(row[k])
        print(
            f"round {i + 1}{' (warm-up)' if i < a.warmup else ''}: "
            + ", ".join(
                f"{k} load {row[k]['total_s']:.2f} s, ready {row[k]['ready_s']:.2f} s"
                for k in order
            ),
            file=sys.stderr,
        )
    summary = {}
    for key, _, _ in METRICS:
        summary[key] = {
            k: {
                "min": min(s[key] for s in samples[k]),
                "median": statistics.median(s[key] for s in samples[k]),
            }
            for k in trees
        }
        if len(trees) == 2:
            summary[key]["ratio_median"] = (
                summary[key]["after"]["median"] / summary[key]["before"]["median"]
            )
    c = cpu()
    print(
        f"\n{c['model']}, {c['cores']} cores, flags: {' '.join(c['flags']) or '-'}; "
        f"{a.repeats} samples per tree (min / median)\n"
    )
    head = " | ".join(f"{k} min | {k} median" for k in trees)
    print(
        f"| metric | {head} |{' after/before |' if len(trees) == 2 else ''}\n"
        f"|---|{'--:|' * (2 * len(trees) + (len(trees) == 2))}"
    )
    for key, label, fmt in METRICS:
        cells = " | ".join(
            f"{fmt.format(summary[key][k]['min'])} | {fmt.format(summary[key][k]['median'])}"
            for k in trees
        )
        ratio = f" {summary[key]['ratio_median']:.2f}x |" if len(trees) == 2 else ""
        print(f"| {label} | {cells} |{ratio}")
    for k in trees:
        heavy = [m for m, on in samples[k][0]["imported"].items() if on]
        print(f"\n{k}: imported on load: {', '.join(heavy) or 'none of ' + ', '.join(HEAVY)}")
    versions = {p: importlib.metadata.version(p) for p in ("torch", "transformers", "peft")}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(
        json.dumps(
            {
                "command": command,
                "cpu": c,
                "python": sys.version.split()[0],
                "versions": versions,
                "run": str(run),
                "trees": trees,
                "repeats": a.repeats,
                "warmup": a.warmup,
                "summary": summary,
                "samples": samples,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
