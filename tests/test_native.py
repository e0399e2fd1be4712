"""tunelab's C kernels (tunelab.native): built once per source, compiler and CPU into the cache,
reused after; masks that do not depend on the thread count; a clear fallback without a
compiler."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tunelab import native


def test_the_library_builds_once_and_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    first = native.build()
    assert first.parent == tmp_path / "native" and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert native.build() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary left


def test_a_damaged_cached_library_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", False)
    path = native.build()
    path.write_bytes(path.read_bytes()[:100])  # cut short
    lib = native.library()
    assert lib is not None and path.stat().st_size > 1000
    m = torch.empty(1000, dtype=torch.bfloat16)
    lib.keep_mask16(m.data_ptr(), 1000, 1, 32768, 0x3F80, 1)
    assert 300 < int((m == 1).sum()) < 700


def test_masks_are_the_same_for_any_thread_count():
    lib = native.library()
    assert lib is not None
    n = 300_001  # above the one-thread cutoff, with a partial last block
    out = {}
    for threads in (1, 2, 3):
        m = torch.empty(n, dtype=torch.bfloat16)
        lib.keep_mask16(m.data_ptr(), n, 12345, 6554, 0x3F80, threads)
        out[threads] = m
    assert torch.equal(out[1], out[2]) and torch.equal(out[1], out[3])
    assert set(out[1].unique().tolist()) == {0.0, 1.0}
    assert abs((out[1] == 0).float().mean().item() - 0.1) < 0.003  # threshold 6554 / 65536


def test_bf16_dropout_rounds_like_pytorch_and_keeps_nan_and_inf():
    lib = native.library()
    assert lib is not None
    x = torch.tensor([1.0, -3.0, float("inf"), float("nan"), 1e-40, 65504.0] * 4000)
    xb = x.to(torch.bfloat16)
    out = torch.empty_like(xb)
    lib.dropout_bf16(xb.data_ptr(), out.data_ptr(), xb.numel(), 7, 0, 1.1, 2)  # keep all
    expected = xb * 1.1
    assert torch.equal(out.isnan(), expected.isnan())
    assert torch.equal(out[~out.isnan()], expected[~expected.isnan()])


def test_without_a_compiler_it_says_why_once_and_falls_back(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_why", "")
    with pytest.raises(RuntimeError, match="no C compiler"):
        native.build()
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        assert native.library() is None
        assert native.library() is None
    warnings = [r.getMessage() for r in caplog.records if "CPU kernels" in r.getMessage()]
    assert len(warnings) == 1 and "no C compiler" in warnings[0]
    assert native.describe() == "pytorch (no C compiler (cc or gcc) on the PATH)"
    from tunelab.training.fast_dropout import dropout

    assert 0 < torch.count_nonzero(dropout(torch.ones(1000), 0.5)) < 1000  # PyTorch's path


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    assert native.library() is None
    assert native.describe() == "pytorch (TUNELAB_NATIVE=0)"
    assert not native.supports("attention_chain_available")
    with pytest.raises(RuntimeError, match="not loaded: pytorch .TUNELAB_NATIVE=0."):
        native.loaded()  # a caller that skipped the availability check hears why


def test_a_run_folder_records_which_kernels_trained_it(trained_runs):
    meta = json.loads((trained_runs["full"] / "tunelab.json").read_text())
    assert meta["machine"]["kernels"] == "tunelab C"  # the tiny BERT trains with dropout
