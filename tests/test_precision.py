"""`--precision auto` for injected CPU capabilities, the machine record in run folders, and bf16
training against fp32 on the tiny model (no speed is asserted: only decisions and outputs)."""

from __future__ import annotations

import json

import pytest
import torch

import tunelab
from conftest import train_args
from tunelab import machine
from tunelab.cli import main
from tunelab.errors import ConfigError
from tunelab.training.prepare import resolve_precision

CPU = torch.device("cpu")


@pytest.fixture
def flags(monkeypatch):
    """``flags("amx_bf16,avx2")``: pretend the CPU has exactly these."""

    def use(value: str) -> None:
        monkeypatch.setenv(machine.ENV, value)
        machine.detected_flags.cache_clear()

    yield use
    machine.detected_flags.cache_clear()


@pytest.mark.parametrize(
    "cpu_flags, auto",
    [
        ("avx2,avx512f,avx512_bf16,avx512_vnni,amx_tile,amx_bf16,amx_int8", "bf16"),
        ("avx2,avx512f,avx512_bf16,avx512_vnni", "bf16"),
        ("avx2,avx512f,avx512_vnni", "fp32"),
        ("avx2", "fp32"),
        ("", "fp32"),
    ],
)
def test_auto_picks_bf16_only_where_the_cpu_has_it(flags, cpu_flags, auto, capsys):
    flags(cpu_flags)
    assert resolve_precision("auto", CPU) == auto
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"  # runs anyway ...
    warned = "no native bf16" in capsys.readouterr().err
    assert warned == (auto == "fp32")  # ... with a warning where it is emulated
    with pytest.raises(ConfigError, match="fp16.*needs a GPU"):
        resolve_precision("fp16", CPU)


def test_the_emulated_bf16_warning_names_the_measured_slowdown(flags, capsys):
    flags("avx2")
    resolve_precision("bf16", CPU)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "40x slower than fp32" in err and "--precision fp32" in err


def test_the_machine_is_described_and_recorded(trained_runs):
    m = machine.describe()
    assert m["cores"] >= 1 and m["versions"]["torch"] == torch.__version__
    assert m["torch_cpu_capability"] in ("DEFAULT", "NO AVX", "AVX2", "AVX512", "ZVECTOR")
    assert m["flags"] == ["avx2"] and m["native_bf16"] is False  # the suite's injected CPU
    meta = json.loads((trained_runs["full"] / "tunelab.json").read_text())
    assert meta["precision"] == "fp32" and meta["machine"]["flags"] == ["avx2"]


@pytest.mark.slow
def test_bf16_training_agrees_with_fp32(flags, learnable_model_dir, toy_data, tmp_path):
    """auto on an AMX CPU trains in bf16 (plain matmul attention); its predictions agree with
    the fp32 run's on at least 90% of the test split and its accuracy is within 0.1."""
    runs = {}
    for name, cpu_flags in (("fp32", "avx2"), ("bf16", "avx2,avx512_bf16,amx_bf16")):
        flags(cpu_flags)
        out = tmp_path / name
        assert main(train_args(learnable_model_dir, toy_data, out, "--epochs", "4")) == 0
        meta = json.loads((out / "tunelab.json").read_text())
        assert meta["precision"] == name
        runs[name] = (json.loads((out / "metrics.json").read_text())["test"], out)
    (fp32, fp32_dir), (bf16, bf16_dir) = runs["fp32"], runs["bf16"]
    assert abs(bf16["accuracy"] - fp32["accuracy"]) <= 0.1, (bf16, fp32)
    texts = [r.split(",")[0] for r in toy_data["test"].read_text().splitlines()[1:]]
    a = [p["label"] for p in tunelab.load(fp32_dir, precision="fp32").predict(texts)]
    b = [p["label"] for p in tunelab.load(bf16_dir, precision="fp32").predict(texts)]
    assert sum(x == y for x, y in zip(a, b, strict=True)) >= 0.9 * len(a)


@pytest.mark.parametrize(
    "cpu_flags, auto", [("avx2,avx512_bf16,amx_bf16", "bf16"), ("avx2", "fp32")]
)
def test_inference_auto_follows_the_cpu(flags, cpu_flags, auto, trained_runs):
    from tunelab.inference import inference_precision

    flags(cpu_flags)
    assert inference_precision("auto", CPU) == auto
    assert inference_precision("fp32", CPU) == "fp32"
    m = tunelab.load(trained_runs["full"])
    assert m.backend == f"pytorch {auto} (cpu)" and auto in repr(m)
    dtype = torch.bfloat16 if auto == "bf16" else torch.float32
    assert {p.dtype for p in m.model.parameters()} == {dtype}
    with pytest.raises(tunelab.errors.TunelabError, match="precision must be"):
        tunelab.load(trained_runs["full"], precision="fp8")


def test_bf16_inference_agrees_with_fp32(trained_runs, toy_data):
    """bf16 weights score the test split like fp32: the same labels on at least 90%, logits
    within 0.15 (bf16 keeps 8 bits of mantissa)."""
    texts = [r.split(",")[0] for r in toy_data["test"].read_text().splitlines()[1:]]
    for method in ("full", "lora"):
        fp32 = tunelab.load(trained_runs[method], precision="fp32")
        bf16 = tunelab.load(trained_runs[method], precision="bf16")
        assert bf16.backend == "pytorch bf16 (cpu)"
        a, b = fp32.logits(texts), bf16.logits(texts)
        assert b.dtype == a.dtype and abs(a - b).max() < 0.15, abs(a - b).max()
        assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.9


@pytest.mark.slow
def test_bf16_lora_keeps_the_frozen_base_in_bf16_and_saves_fp32(
    flags, learnable_model_dir, toy_data, tmp_path
):
    """LoRA in bf16 stores the frozen base in bf16 (cast once, not per op) while the adapters,
    the head and the optimizer stay fp32; the run folder holds fp32 adapters only, and the
    run predicts like the fp32 one."""
    from safetensors.torch import load_file

    from tunelab.training.bf16_compute import frozen_to_bf16

    texts = [r.split(",")[0] for r in toy_data["test"].read_text().splitlines()[1:]]
    labels = {}
    for name, cpu_flags in (("fp32", "avx2"), ("bf16", "avx2,avx512_bf16,amx_bf16")):
        flags(cpu_flags)
        out = tmp_path / name
        args = train_args(learnable_model_dir, toy_data, out, "--method", "lora")
        assert main([*args, "--epochs", "3"]) == 0
        assert json.loads((out / "tunelab.json").read_text())["precision"] == name
        saved = load_file(out / "adapter_model.safetensors")
        assert saved and {t.dtype for t in saved.values()} == {torch.float32}
        model = tunelab.load(out, precision="fp32")
        labels[name] = [p["label"] for p in model.predict(texts)]
    same = sum(a == b for a, b in zip(labels["fp32"], labels["bf16"], strict=True))
    assert same >= 0.9 * len(texts)

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].requires_grad_(False)
    assert frozen_to_bf16(model) == 2
    assert model[0].weight.dtype == torch.bfloat16 and model[1].weight.dtype == torch.float32
