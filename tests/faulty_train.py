"""``python tests/faulty_train.py KIND@STEP tunelab-args...``: run the tunelab CLI with a
callback that sends this process SIGKILL (``kill@7``) or SIGINT (``int@5``) right after
optimizer step STEP, the way the crash and Ctrl-C tests interrupt a real run at a known point.
The fault lives here, in the tests, not in the production loop.

``python tests/faulty_train.py --serve``: the zygote of the seeded crash, full-disk and
read-only tests (tests/test_fault_injection.py); see :class:`Faults` and :func:`serve`."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import threading
from functools import partial

from tunelab.training import pipeline
from tunelab.training.loop import Callback, Loop


class FaultInjection(Callback):
    def __init__(self, sig: int, step: int) -> None:
        self.sig, self.step = sig, step

    def on_step_end(self, loop: Loop) -> None:
        if loop.state.step == self.step:
            os.kill(os.getpid(), self.sig)


# --- seeded faults at every kind of point: the crash tests of tests/test_fault_injection.py ---
#
# A *fault point* is anything the run does that a crash could interrupt, named by a key
# (step, rank, n) that orders it in the run: step = optimizer steps done when it happens (-1
# before training, AFTER once training is over), rank = the phase (see PHASES), n = how many
# points of that phase came before it at that step. Phases:
#   forward / backward / optimizer: inside the forward pass of a training step (at each leaf
#       module), inside its backward pass (as each parameter's gradient is made), after the
#       optimizer update (before the scheduler's);
#   eval: inside a validation forward pass; step: after a step and its callbacks;
#   checkpoint: each file operation while a checkpoint is written (mkdir, open, write of a
#       safetensors or torch file, rename, delete);
#   run-log: a write to the staged run folder while training (tensorboard events);
#   run-folder / cleanup: each file operation writing the run folder once training is over,
#       and removing the checkpoints; export: each file operation of `tunelab export`.
# File operations are seen through Python's audit hooks (open, mkdir, rename, rmtree, ...) and
# by wrapping the writers that bypass them (safetensors and torch.save, in Rust and C++).
#
# The spec (JSON in $TUNELAB_FAULTS) says what to do: "trace" (a file that gets one JSON line
# per fault point: a census of an uninterrupted run), "kill" (SIGKILL at the first point at or
# after this key; with "truncate": f, the file written just before is first cut to f of its
# size, which is exactly what a kill in the middle of writing it leaves), "enospc" ({"at": key,
# "bytes": n}: from that point the disk takes n more bytes), "readonly" ({"at": key, "folder":
# path, "how": "chmod"|"inject"}: from that point the folder is read-only; "inject" refuses
# writes below it the way the file system would, for root, whom chmod does not stop).

PHASES = ["start", "run-log", "eval", "checkpoint", "step", "forward", "backward", "optimizer"]
PHASES += ["run-folder", "cleanup", "export"]
AFTER = 10**9
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_MUTATING = ("os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate", "shutil.rmtree")


class Faults(Callback):
    """The faults of ``spec`` (see above) in the tunelab command ``argv``; joins the training
    loop as a callback to know the step and to hook the model and optimizers."""

    def __init__(self, spec: dict, argv: list[str]) -> None:
        import io

        self.spec = spec
        self.root = os.path.realpath(spec["root"])
        out = os.path.realpath(argv[argv.index("--output-dir") + 1])
        self.ckpts, self.export = out + ".checkpoints", argv[0] == "export"
        self.staged = (out, os.path.join(os.path.dirname(out), f".{os.path.basename(out)}."))
        self.kill = tuple(spec["kill"]) if spec.get("kill") else None
        self.loop: Loop | None = None
        self.over, self.counts, self.prev_file, self.quiet = False, {}, None, False
        self.armed: set[str] = set()
        self.full, self.readonly = False, None
        self.budget = spec.get("enospc", {}).get("bytes")
        self.open = io.open
        self.trace = open(spec["trace"], "a") if spec.get("trace") else None  # noqa: SIM115
        self._wrap_writers()
        sys.addaudithook(self._audit)

    # where the run is
    def on_train_begin(self, loop: Loop) -> None:
        self.loop = loop
        for m in loop.job.model.modules():
            if not list(m.children()):
                m.register_forward_hook(self._forward)
        for p in loop.job.model.parameters():
            if p.requires_grad:
                p.register_hook(self._backward)
        for o in loop.job.optimizers:
            o.register_step_post_hook(lambda *_: self.point("optimizer", "after optimizer.step"))

    def on_step_end(self, loop: Loop) -> None:
        self.point("step", f"after step {loop.state.step}")

    def on_train_end(self, loop: Loop) -> None:
        self.over = True

    def _forward(self, module, args, output) -> None:
        phase = "forward" if module.training else "eval"
        self.point(phase, f"in {type(module).__name__}.forward")

    def _backward(self, grad):
        self.point("backward", "in backward")

    def _phase(self, path: str) -> str:
        staged = (
            path == self.staged[0]
            or path.startswith(self.staged[1])
            or path.startswith(self.staged[0] + os.sep)
        )
        if self.export:
            return "export" if staged else "start"
        if self.loop is None:
            return "start"
        if path.startswith(self.ckpts):
            return "cleanup" if self.over else "checkpoint"
        return ("run-folder" if self.over else "run-log") if staged else "start"

    # one fault point
    def point(self, phase: str, what: str, path: str | None = None, written: int = -1) -> None:
        """A fault point; ``written``: bytes about to be written to ``path`` (0: unknown)."""
        if self.quiet or threading.current_thread() is not threading.main_thread():
            return  # e.g. tensorboard's writer thread
        step = -1 if self.loop is None else AFTER if self.over else self.loop.state.step
        rank = PHASES.index(phase)
        n = self.counts.get((step, rank), 0)
        self.counts[(step, rank)] = n + 1
        key = (step, rank, n)
        where = {"k": key, "p": phase, "d": what + (f" {self._rel(path)}" if path else "")}
        if written >= 0:
            where["b"], where["f"] = written, path
        for name in ("enospc", "readonly"):
            at = self.spec.get(name, {}).get("at")
            if at and key >= tuple(at) and name not in self.armed:
                self.armed.add(name)
                self._arm(name)
        if self.kill and key >= self.kill and phase not in ("start", "run-log"):
            cut = self.spec.get("truncate")
            if cut is not None and self.prev_file and os.path.isfile(self.prev_file):
                size = os.path.getsize(self.prev_file)
                self.quiet = True
                os.truncate(self.prev_file, int(size * cut))
                where["cut"] = f"{self._rel(self.prev_file)} to {int(size * cut)} of {size} bytes"
            self._log({**where, "kill": True})
            os.kill(os.getpid(), signal.SIGKILL)
        self._log(where)
        self.prev_file = path if written >= 0 else None

    def _log(self, line: dict) -> None:
        if self.trace is not None and ("kill" in line or not self.kill):
            self.trace.write(json.dumps(line) + "\n")
            self.trace.flush()

    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.root)

    def _arm(self, name: str) -> None:
        if name == "enospc":
            self.full = True
            return
        spec = self.spec["readonly"]
        folder = spec["folder"]
        if folder == "@staged":  # this process's staged run folder
            folder = f"{self.staged[1]}partial-{os.getpid()}"
        self.readonly = os.path.realpath(folder)
        if spec["how"] == "chmod":
            for root, _dirs, files in os.walk(self.readonly):
                for f in files:
                    os.chmod(os.path.join(root, f), 0o444)
            for root, _, _ in sorted(os.walk(self.readonly), reverse=True):
                os.chmod(root, 0o555)
            self.readonly = None  # the file system refuses from now on

    # the file system as the run sees it
    def _mine(self, path) -> str | None:
        if isinstance(path, int):
            try:
                path = os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return None
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None
        p = os.path.realpath(os.fsdecode(path))
        return p if p == self.root or p.startswith(self.root + os.sep) else None

    def _refused(self, path: str, creates: bool) -> OSError | None:
        """The error a real full disk or read-only folder gives for this operation."""
        if self.readonly and (path + os.sep).startswith(self.readonly + os.sep):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        if self.full and creates and self.budget is not None and self.budget <= 0:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return None

    def _audit(self, event: str, args) -> None:
        if self.quiet:
            return
        if event == "open":
            mode, flags = args[1], args[2]
            writes = (
                any(c in mode for c in "wax+") if isinstance(mode, str) else flags & _WRITE_FLAGS
            )
            path = self._mine(args[0]) if writes else None
            if path is not None:
                self.point(self._phase(path), "open", path, written=0)
                if (err := self._refused(path, False)) is not None:
                    raise err
        elif event in _MUTATING and (path := self._mine(args[0])) is not None:
            self.point(self._phase(path), event.split(".")[1], path)
            if event not in ("shutil.rmtree", "os.remove", "os.rmdir") and (
                err := self._refused(path, event == "os.mkdir")
            ):
                raise err  # rmtree(ignore_errors=True) must stay quiet, as it would be

    # the writers that bypass the audit hooks, and a disk that fills up
    def _take(self, n: int) -> int:
        """Bytes of ``n`` the disk still takes."""
        if not self.full or self.budget is None:
            return n
        room = max(0, min(n, self.budget))
        self.budget -= n
        return room

    def _write_bytes(self, data: bytes, path: str, kind: str) -> None:
        self.point(self._phase(path), f"write {kind}", path, written=len(data))
        if (err := self._refused(path, True)) is not None:
            raise self._as_library(kind, err, path)
        room = self._take(len(data))
        self.quiet = True  # our own open is not another fault point
        try:
            with self.open(path, "wb") as f:
                f.write(data[:room])
        finally:
            self.quiet = False
        if room < len(data):
            raise self._as_library(kind, OSError(errno.ENOSPC, "No space left on device"), path)

    @staticmethod
    def _as_library(kind: str, err: OSError, path: str) -> Exception:
        """What safetensors and torch.save raise for ``err`` (see tunelab.files.as_os_error)."""
        if kind == "safetensors":
            from safetensors import SafetensorError

            return SafetensorError(
                f"Error while serializing: I/O error: {err.strerror} (os error {err.errno})"
            )
        if err.errno == errno.ENOSPC:
            return RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")
        return RuntimeError(
            f"[enforce fail at inline_container.cc:747] . open file failed with strerror: "
            f"{err.strerror}"
        )

    def _wrap_writers(self) -> None:
        import builtins
        import io
        import shutil

        import safetensors.torch
        import torch
        import transformers.modeling_utils as mu

        real_st, real_save, real_open, real_usage = (
            safetensors.torch.save_file,
            torch.save,
            io.open,
            shutil.disk_usage,
        )

        def save_file(tensors, filename, metadata=None):
            path = self._mine(filename)
            if path is None:
                return real_st(tensors, filename, metadata)
            self._write_bytes(safetensors.torch.save(tensors, metadata), path, "safetensors")

        def save(obj, f, *args, **kwargs):
            path = self._mine(f) if isinstance(f, (str, os.PathLike)) else None
            if path is None:
                return real_save(obj, f, *args, **kwargs)
            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            self._write_bytes(buf.getvalue(), path, "torch")

        def open_(file, mode="r", *args, **kwargs):
            f = real_open(file, mode, *args, **kwargs)
            if self.full and any(c in mode for c in "wax+") and self._mine(file):
                return _Filling(f, self)
            return f

        def disk_usage(path):
            u = real_usage(path)
            return u._replace(free=0) if self.full and (self.budget or 0) <= 0 else u

        safetensors.torch.save_file = mu.safe_save_file = save_file
        torch.save = save
        io.open = builtins.open = open_
        shutil.disk_usage = disk_usage


class _Filling:
    """A file on a disk that fills up: writes past the budget write what fits, then fail."""

    def __init__(self, f, faults: Faults) -> None:
        self._f, self._faults = f, faults

    def write(self, data):
        size = len(data.encode() if isinstance(data, str) else data)
        room = self._faults._take(size)
        if room < size:
            self._f.write(data[:room])
            self._f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.write(data)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


REAL_RUN_TRAINING = pipeline.run_training


def run_cli(argv: list[str], callbacks: list[Callback]) -> int:
    """`tunelab ARGV` with ``callbacks`` added to the training loop."""
    from tunelab.cli import main as cli

    pipeline.run_training = partial(REAL_RUN_TRAINING, callbacks=callbacks)
    return cli(argv)


# --- a zygote: the crash tests start dozens of runs; forking them from a process that has
# already imported torch and transformers saves ~5 s of imports each ---
WARM = (
    "torch",
    "transformers",
    "transformers.models.bert.modeling_bert",
    "tunelab.cli",
    "tunelab.training.pipeline",
    "tunelab.export.build",
    "tunelab.inference",
    "sklearn.metrics",
    "matplotlib.pyplot",
    "torch.utils.tensorboard",
)


def serve() -> int:
    """Read one JSON request a line ({"argv", "log", "faults"?, "kill_step"?}), run it in a
    forked child, answer {"rc": exit code, or minus the signal that ended it}."""
    import importlib

    os.environ.setdefault("MPLBACKEND", "Agg")
    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from tunelab.cli import build_parser

    build_parser()  # imports every command's module
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"rc": rc}), flush=True)
    return 0


def _child(req: dict) -> None:
    rc = 1
    try:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # the zygote's requests are not for it
        callbacks: list[Callback] = []
        if req.get("kill_step"):
            callbacks.append(FaultInjection(signal.SIGKILL, req["kill_step"]))
        if req.get("faults"):
            callbacks.append(Faults(req["faults"], req["argv"]))
        rc = run_cli(req["argv"], callbacks)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def main() -> int:
    if sys.argv[1] == "--serve":
        return serve()
    kind, step = sys.argv[1].split("@", 1)
    fault = FaultInjection(signal.SIGKILL if kind == "kill" else signal.SIGINT, int(step))
    return run_cli(sys.argv[2:], [fault])  # the callback joins what `tunelab train` runs


if __name__ == "__main__":
    raise SystemExit(main())
