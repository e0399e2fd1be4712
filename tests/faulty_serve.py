"""``python tests/faulty_serve.py tunelab-serve-args...``: `tunelab serve` whose models raise on
any input containing ``BOOM``, the way the serving tests make one request break a shared
forward pass (a model failure validation cannot foresee). The fault lives here, in the tests."""

from __future__ import annotations

import sys

from tunelab.inference import TunedModel

real = TunedModel.predict


def predict(self, texts, batch_size: int = 64):
    batch = [texts] if isinstance(texts, (str, dict)) else texts
    if any("BOOM" in str(t) for t in batch):
        raise RuntimeError("injected model failure")
    return real(self, texts, batch_size)


TunedModel.predict = predict  # type: ignore[method-assign]

if __name__ == "__main__":
    from tunelab.cli import main

    raise SystemExit(main(["serve", *sys.argv[1:]]))
