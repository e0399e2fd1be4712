"""Run folders written by the pre-refactor tunelab (format_version 1) still load and predict
the same: the committed fixtures in tests/fixtures/runs_v1 (see its README.md) against the
code under test.

Each test copies the fixture tree to tmp_path (a test never writes into the checkout) and,
for the LoRA run only, rewrites the one field that cannot be committed: ``base_model.path`` in
its ``tunelab.json``, an absolute path to the base model the run was trained from, which the
old code records and which pointed into a temporary folder that no longer exists. It is set to
the copied ``tiny-bert/``. Nothing else is touched: the full fine-tuning runs keep their dead
base path, since loading them must not need the base model.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

import tunelab
from tunelab.runs import read_run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "runs_v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))["runs"]
NEEDS_BASE = {"text-classification-lora"}  # PEFT runs hold only the adapter and the head
SCORE_TOL = 1e-5  # prediction scores, probabilities, regression values
METRIC_TOL = 1e-6  # evaluate() metrics


def _plain(x):
    """Predictions/metrics as JSON would carry them (numpy scalars, tuples -> Python)."""
    return json.loads(json.dumps(x, default=lambda o: o.item() if hasattr(o, "item") else o))


def assert_close(actual, expected, tol: float, where: str = "") -> None:
    """Same structure, every expected key present (added keys are allowed); strings, bools,
    None and integers exactly; floats within tol."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a dict, got {actual!r}"
        missing = sorted(set(expected) - set(actual))  # new keys may be added, none dropped
        assert not missing, f"{where}: missing keys {missing}"
        for k in expected:
            assert_close(actual[k], expected[k], tol, f"{where}.{k}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{where}: expected {len(expected)} items, got {actual!r}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, tol, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), (
            f"{where}: expected a number, got {actual!r}"
        )
        if math.isnan(expected):
            assert math.isnan(actual), f"{where}: expected NaN, got {actual!r}"
        else:
            assert actual == pytest.approx(expected, rel=0, abs=tol), (
                f"{where}: {actual!r} != {expected!r} (tolerance {tol})"
            )
    else:  # str (labels, entity text/type), int (entity offsets, counts), bool, None
        assert actual == expected and type(actual) is type(expected), (
            f"{where}: {actual!r} != {expected!r}"
        )


@pytest.fixture()
def fixture_copy(tmp_path) -> Path:
    root = tmp_path / "runs_v1"
    shutil.copytree(FIXTURES, root)
    for name in NEEDS_BASE:
        f = root / name / "tunelab.json"
        info = json.loads(f.read_text(encoding="utf-8"))
        info["base_model"]["path"] = str(root / "tiny-bert")  # the only field changed
        # same layout as the old runs.write_json, so only that one line differs
        f.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return root


def test_fixtures_present():
    assert set(EXPECTED) == {
        "text-classification-full",
        "regression-full",
        "token-classification-full",
        "text-classification-lora",
    }
    for name in EXPECTED:
        assert (FIXTURES / name / "tunelab.json").is_file(), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_v1_run_loads_and_predicts_the_same(name, fixture_copy):
    exp = EXPECTED[name]
    run = fixture_copy / name
    if name in NEEDS_BASE:  # the rewrite touched that one line and nothing else
        old = (FIXTURES / name / "tunelab.json").read_text(encoding="utf-8").splitlines()
        new = (run / "tunelab.json").read_text(encoding="utf-8").splitlines()
        changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
        assert len(old) == len(new) and len(changed) == 1 and '"path"' in changed[0][1]

    info = read_run(run)
    assert info.format_version == 1
    assert (info.task, info.method) == (exp["task"], exp["method"])
    # the typed description writes back exactly what the old code wrote (nothing lost)
    assert info.to_json() == json.loads((run / "tunelab.json").read_text(encoding="utf-8"))

    m = tunelab.load(run, device="cpu")
    preds = _plain(m.predict(exp["inputs"]))
    assert_close(preds, exp["predictions"], SCORE_TOL, f"{name}.predict")
    metrics = _plain(m.evaluate(str(fixture_copy / exp["eval_file"])))
    assert_close(metrics, exp["evaluate"], METRIC_TOL, f"{name}.evaluate")
