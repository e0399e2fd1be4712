"""``python tests/faulty_train.py KIND@STEP tunelab-args...``: run the tunelab CLI with a
callback that sends this process SIGKILL (``kill@7``) or SIGINT (``int@5``) right after
optimizer step STEP, the way the crash and Ctrl-C tests interrupt a real run at a known point.
The fault lives here, in the tests, not in the production loop."""

from __future__ import annotations

import os
import signal
import sys
from functools import partial

from tunelab.training import pipeline
from tunelab.training.loop import Callback, Loop


class FaultInjection(Callback):
    def __init__(self, sig: int, step: int) -> None:
        self.sig, self.step = sig, step

    def on_step_end(self, loop: Loop) -> None:
        if loop.state.step == self.step:
            os.kill(os.getpid(), self.sig)


def main() -> int:
    kind, step = sys.argv[1].split("@", 1)
    fault = FaultInjection(signal.SIGKILL if kind == "kill" else signal.SIGINT, int(step))
    real = pipeline.run_training
    pipeline.run_training = partial(real, callbacks=[fault])  # what `tunelab train` calls
    from tunelab.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
