"""The studio's job queue: one job at a time, jobs that outlive the studio, a SIGKILLed job shown
as interrupted and resumed from its checkpoint; and the ETA estimator it shares with the planner."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import train_args
from tunelab import estimate
from tunelab.errors import TunelabError
from tunelab.runs import read_run, read_train_log, resumable, train_log_path
from tunelab.studio.jobs import JobQueue

# a stand-in job for the scheduler's own tests: records when it ran, sleeps, honours Ctrl-C
FAKE = r"""
import json, signal, sys, time
out, seconds = sys.argv[1], float(sys.argv[2])
signal.signal(signal.SIGINT, lambda *a: sys.exit(130))
t0 = time.time()
time.sleep(seconds)
open(out, "w").write(json.dumps([t0, time.time()]))
"""


def _fake_queue(root: Path) -> JobQueue:
    return JobQueue(root / "jobs", program=[sys.executable, "-c", FAKE])


def _wait(queue: JobQueue, ids: list[str], states: tuple[str, ...], timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        queue.tick()
        if all(queue.get(i).state in states for i in ids):
            return
        time.sleep(0.05)
    raise AssertionError({i: queue.get(i).state for i in ids})


def test_two_jobs_never_run_at_once_and_run_in_order(tmp_path):
    q = _fake_queue(tmp_path)
    ids = [
        q.submit([str(tmp_path / f"t{i}.json"), "0.4"], str(tmp_path / f"run{i}")).id
        for i in range(3)
    ]
    assert [q.get(i).state for i in ids] == ["running", "queued", "queued"]
    _wait(q, ids, ("finished",))
    spans = [json.loads((tmp_path / f"t{i}.json").read_text()) for i in range(3)]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, spans  # the next began only after the previous ended
    assert [q.get(i).returncode for i in ids] == [0, 0, 0]


def test_a_restarted_studio_reattaches_to_live_jobs_and_keeps_queued_ones(tmp_path):
    q = _fake_queue(tmp_path)
    a = q.submit([str(tmp_path / "a.json"), "30"], str(tmp_path / "ra"))
    b = q.submit([str(tmp_path / "b.json"), "0.1"], str(tmp_path / "rb"))
    assert q.get(a.id).state == "running"
    del q  # the studio goes away; its job runs on in its own session

    q2 = _fake_queue(tmp_path)  # a new studio on the same folder
    assert q2.get(a.id).state == "running" and q2.get(a.id).pid == a.pid
    assert q2.get(b.id).state == "queued"  # still waiting: one job at a time
    os.killpg(a.pid, signal.SIGKILL)  # the job dies while no studio is its parent
    _wait(q2, [a.id], ("interrupted",))
    assert "died" in (q2.get(a.id).error or "")
    _wait(q2, [b.id], ("finished",))  # the queue moved on


def test_stop_is_ctrl_c_and_a_queued_job_is_cancelled(tmp_path):
    q = _fake_queue(tmp_path)
    a = q.submit([str(tmp_path / "a.json"), "30"], str(tmp_path / "ra"))
    b = q.submit([str(tmp_path / "b.json"), "30"], str(tmp_path / "rb"))
    time.sleep(0.5)  # the child has set its SIGINT handler
    assert q.stop(b.id).state == "cancelled"
    assert q.stop(a.id).state == "stopping"
    _wait(q, [a.id], ("stopped",))
    assert q.get(a.id).returncode == 130 and q.get(a.id).to_dict()["resumable"]
    with pytest.raises(TunelabError, match="nothing to stop"):
        q.stop(a.id)
    with pytest.raises(TunelabError, match="already writing"):
        q.submit([str(tmp_path / "c.json"), "0"], str(tmp_path / "rc"))
        q.submit([str(tmp_path / "c.json"), "0"], str(tmp_path / "rc"))


def test_a_sigkilled_training_job_is_interrupted_and_resumes_from_its_checkpoint(
    tiny_model_dir, toy_data, tmp_path
):
    out = tmp_path / "run"
    args = train_args(
        tiny_model_dir, toy_data, out, "--save-steps", "5", "--early-stopping-patience", "0"
    )
    args[args.index("--epochs") + 1] = "40"  # 240 steps: long enough to be killed mid-run
    q = JobQueue(tmp_path / "jobs")
    job = q.submit(args[:], str(out))
    deadline = time.time() + 120
    while not resumable(out):  # a checkpoint is on disk
        assert time.time() < deadline and q.get(job.id).state == "running", q.get(job.id)
        time.sleep(0.05)
    live = train_log_path(out)  # found through runs.py while it trains
    assert live is not None and live.parent != out
    os.killpg(job.pid, signal.SIGKILL)
    _wait(q, [job.id], ("interrupted",))
    assert not out.exists()

    q = JobQueue(tmp_path / "jobs")  # a restart in between changes nothing
    assert q.get(job.id).state == "interrupted"
    assert q.resume(job.id).argv[-1] == "--resume"
    _wait(q, [job.id], ("finished", "failed"), timeout=240)
    assert q.get(job.id).state == "finished", Path(q.get(job.id).log).read_text()[-2000:]
    assert read_run(out).task == "text-classification"
    assert "resuming from" in Path(q.get(job.id).log).read_text()
    p = estimate.progress(read_train_log(out))
    assert p is not None and p.step == p.total_steps == 240 and p.eta_s == 0.0


def test_the_estimator_uses_the_measured_step_rate_and_evaluations():
    events = [
        {"type": "train", "step": 10, "epoch": 0.5, "total_steps": 100, "elapsed_s": 5.0},
        {"type": "train", "step": 20, "epoch": 1.0, "total_steps": 100, "elapsed_s": 7.0},
        {"type": "eval", "step": 20, "epoch": 1.0, "eval_s": 3.0},
        {"type": "train", "step": 30, "epoch": 1.5, "total_steps": 100, "elapsed_s": 9.0},
    ]
    p = estimate.progress(events)
    assert p is not None and p.step == 30 and p.fraction == pytest.approx(0.3)
    # the first step's slow start is left out: 0.2 s per step; evaluations every 20 steps
    assert p.seconds_per_step == pytest.approx(0.2)
    assert p.eta_s == pytest.approx(70 * 0.2 + 4 * 3.0)
    assert estimate.progress([{"type": "train", "step": 10, "loss": 1.0}]) is None  # old logs
