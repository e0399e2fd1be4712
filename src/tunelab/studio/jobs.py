"""The studio's job queue: training runs started from the page, one at a time on a CPU box,
the rest waiting in order.

A job is a ``tunelab`` command (an argument list built from validated fields, never a shell
string) run as its own process session, its output in a log file, so it outlives the page that
started it and the studio itself. Each job is a JSON file under ``<runs-dir>/.studio/jobs/``,
rewritten atomically on every change; a restarted studio reads them back, re-attaches to a job
whose process still lives (same pid and the same process start time, so a recycled pid is not
mistaken for it) and marks one whose process died "interrupted": resumable with ``--resume``
where it left a checkpoint, else started again.

States: queued -> running -> finished | failed | stopped | interrupted; stopping while a Stop
(the Ctrl-C path: the run finishes its step and saves a checkpoint) is under way; cancelled for
a queued job removed before it started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.files import atomic_write_text
from tunelab.runs import is_run, pid_alive, proc_stat, resumable

ACTIVE = ("queued", "running", "stopping")
RESUMABLE = ("stopped", "interrupted", "failed")


@dataclass
class Job:
    id: str
    argv: list[str]  # after `tunelab`: ["train", "--config", ...]
    output_dir: str
    title: str = ""
    state: str = "queued"
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    pid_start: str | None = None  # the process's start time (/proc), against pid reuse
    returncode: int | None = None
    error: str | None = None
    resumes: int = 0
    log: str = ""
    history: list[str] = field(default_factory=list)  # "time state" lines

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resumable"] = self.state in RESUMABLE
        return d


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot, or None."""
    fields = proc_stat(pid)
    return fields[19] if fields and len(fields) > 19 else None


def _alive(job: Job) -> bool:
    """Whether the job's process still runs: the same pid, started at the same time (a recycled
    pid is another process), and not a zombie waiting for a parent that is gone."""
    if job.pid is None or not pid_alive(job.pid):
        return False
    fields = proc_stat(job.pid)
    if fields is None:
        return True  # no /proc to ask: the pid is all there is
    if job.pid_start is not None and len(fields) > 19 and fields[19] != job.pid_start:
        return False  # the pid was recycled
    return fields[0] != "Z"


class JobQueue:
    """Jobs under ``root``, at most ``max_running`` at once, started by :meth:`tick` (called by
    a background thread once :meth:`start` runs, or directly in tests). A job runs
    ``program + argv``; ``program`` is this Python's ``-m tunelab``."""

    def __init__(
        self, root: str | Path, max_running: int = 1, program: list[str] | None = None
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_running = max_running
        self.program = program or [sys.executable, "-m", "tunelab"]
        self._lock = threading.RLock()
        self._children: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.jobs: dict[str, Job] = {}
        for f in sorted(self.root.glob("*.json")):
            job = self._read(f)
            if job is not None:
                self.jobs[job.id] = job
        self.tick()  # re-attach to live jobs, mark dead ones

    # -- records ---------------------------------------------------------------------------
    def _read(self, f: Path) -> Job | None:
        try:
            raw = json.loads(f.read_text(encoding="utf-8"))
            names = {x.name for x in fields(Job)}
            return Job(**{k: v for k, v in raw.items() if k in names})
        except (OSError, ValueError, TypeError):
            return None  # a damaged record is left for a person to look at, not guessed at

    def _save(self, job: Job, state: str | None = None) -> None:
        if state is not None and state != job.state:
            job.state = state
            job.history.append(f"{time.time():.3f} {state}")
        atomic_write_text(self.root / f"{job.id}.json", json.dumps(asdict(job), indent=1) + "\n")

    # -- what the page does ----------------------------------------------------------------
    def submit(self, argv: list[str], output_dir: str, title: str = "") -> Job:
        """Queue ``tunelab *argv``; ``output_dir`` is the run folder it writes."""
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TunelabError("a job is a non-empty list of arguments")
        with self._lock:
            busy = [
                j for j in self.jobs.values() if j.state in ACTIVE and j.output_dir == output_dir
            ]
            if busy:
                raise TunelabError(f"{output_dir}: job {busy[0].id} is already writing this run")
            jid = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
            job = Job(jid, list(argv), output_dir, title or Path(output_dir).name)
            job.created = time.time()
            job.log = str(self.root / f"{jid}.log")
            job.history.append(f"{job.created:.3f} queued")
            self.jobs[jid] = job
            self._save(job)
        self.tick()
        return job

    def get(self, jid: str) -> Job:
        job = self.jobs.get(jid)
        if job is None:
            raise TunelabError(f"no job {jid!r}")
        return job

    def list(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: (j.created, j.id))

    def stop(self, jid: str) -> Job:
        """Ctrl-C for a running job (it saves a checkpoint and ends "stopped"); a queued one is
        cancelled."""
        with self._lock:
            job = self.get(jid)
            if job.state == "queued":
                self._save(job, "cancelled")
            elif job.state == "running" and job.pid is not None:
                try:
                    os.killpg(job.pid, signal.SIGINT)  # the whole session: torchrun's workers too
                except ProcessLookupError:
                    pass
                self._save(job, "stopping")
            elif job.state not in ("stopping",):
                raise TunelabError(f"job {jid} is {job.state}: nothing to stop")
        return job

    def resume(self, jid: str) -> Job:
        """Queue a stopped, interrupted or failed job again: from its newest checkpoint
        (``--resume``) where it left one, else from the start."""
        with self._lock:
            job = self.get(jid)
            if job.state not in RESUMABLE:
                raise TunelabError(
                    f"job {jid} is {job.state}: only a stopped, interrupted or failed job resumes"
                )
            argv = [a for a in job.argv if a != "--resume"]
            if resumable(job.output_dir):
                argv.append("--resume")
            job.argv, job.resumes = argv, job.resumes + 1
            job.pid = job.pid_start = job.returncode = job.error = None
            job.started = job.ended = None
            self._save(job, "queued")
        self.tick()
        return job

    # -- the scheduler ---------------------------------------------------------------------
    def tick(self) -> None:
        """Settle jobs whose process ended, then start queued ones while there is room."""
        with self._lock:
            for job in self.jobs.values():
                if job.state in ("running", "stopping"):
                    self._settle(job)
            running = sum(j.state in ("running", "stopping") for j in self.jobs.values())
            for job in self.list():
                if running >= self.max_running:
                    break
                if job.state == "queued":
                    self._launch(job)
                    running += 1

    def _settle(self, job: Job) -> None:
        child = self._children.get(job.id)
        if child is not None:
            rc = child.poll()
            if rc is None:
                return
            del self._children[job.id]
        elif _alive(job):
            return  # a job of an earlier studio, still running: re-attached
        else:
            rc = None  # not our child: its exit code is gone; the run folder tells
        job.returncode, job.ended = rc, time.time()
        if rc == 0 or (rc is None and is_run(Path(job.output_dir)) and self._wrote_run(job)):
            self._save(job, "finished")
        elif job.state == "stopping" or rc == 130:
            self._save(job, "stopped")
        elif rc is None:
            job.error = "the job's process died (killed, or the studio's machine restarted)"
            self._save(job, "interrupted")
        elif rc < 0:
            job.error = f"killed by signal {-rc}"
            self._save(job, "interrupted")
        else:
            job.error = self._last_error(job) or f"exit code {rc}"
            self._save(job, "failed")

    def _wrote_run(self, job: Job) -> bool:
        """Whether the run folder was written by this job (after it started)."""
        f = Path(job.output_dir) / "tunelab.json"
        return f.is_file() and f.stat().st_mtime >= (job.started or job.created) - 1

    def _last_error(self, job: Job) -> str | None:
        try:
            lines = Path(job.log).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        return next((ln for ln in reversed(lines) if ln.startswith("tunelab: error:")), None)

    def _launch(self, job: Job) -> None:
        with open(job.log, "ab") as out:
            out.write(f"$ tunelab {' '.join(job.argv)}\n".encode())
            out.flush()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNELAB_JOB": job.id}
            child = subprocess.Popen(
                [*self.program, *job.argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: it outlives the studio
                env=env,
            )
        self._children[job.id] = child
        job.pid, job.pid_start, job.started = child.pid, process_start(child.pid), time.time()
        self._save(job, "running")

    def start(self, every: float = 0.5) -> None:
        """Run :meth:`tick` every ``every`` seconds in a background thread."""

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    self.tick()
                except Exception as e:  # the scheduler keeps going; the next tick retries
                    print(f"tunelab studio: job queue: {type(e).__name__}: {e}", file=sys.stderr)

        self._thread = threading.Thread(target=loop, name="tunelab-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop scheduling; running jobs go on in their own sessions (a restarted studio
        re-attaches to them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
