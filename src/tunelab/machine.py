"""What this machine can do, detected once: the CPU's vector and matrix extensions, the cores
this process may use, the library versions. Recorded in every run folder (``tunelab.json``,
``machine``), export record and benchmark result, so every figure says where it was measured,
and used by ``--precision auto`` to pick bf16 where the CPU computes it natively.

``TUNELAB_CPU_FLAGS`` replaces the detected flags (comma-separated, e.g.
``avx2,avx512_bf16,amx_bf16``; empty for none): tests and users check the decisions for a CPU
they do not have.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

ENV = "TUNELAB_CPU_FLAGS"
# the flags that decide something, in /proc/cpuinfo's spelling
KNOWN = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "avx_vnni",
)


@functools.cache
def detected_flags() -> frozenset[str]:
    """The CPU flags of :data:`KNOWN` this CPU has (``TUNELAB_CPU_FLAGS`` overrides)."""
    forced = os.environ.get(ENV)
    if forced is not None:
        return frozenset(f.strip() for f in forced.split(",") if f.strip())
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, every decision takes the safe side
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(f for f in line.split(":", 1)[1].split() if f in KNOWN)
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AMX tiles or AVX-512 BF16): only there is bf16
    faster than fp32; elsewhere every bf16 op is emulated and slower."""
    f = detected_flags() if flags is None else flags
    return "amx_bf16" in f or "avx512_bf16" in f


def int8_dot(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX int8)."""
    f = detected_flags() if flags is None else flags
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & f)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """The machine, as recorded next to every figure."""
    import torch

    from tunelab import allocator, native
    from tunelab.backends import cpu_threads
    from tunelab.version import __version__

    versions = {"tunelab": __version__, "torch": torch.__version__}
    for name in ("transformers", "peft", "onnxruntime"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {
        "cpu": cpu_name(),
        "cores": cpu_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "flags": sorted(detected_flags()),
        "native_bf16": native_bf16(),
        "int8_dot": int8_dot(),
        "allocator": allocator.describe(),
        "kernels": native.describe(),  # tunelab's C kernels (dropout, AdamW, attention...)
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
    }
