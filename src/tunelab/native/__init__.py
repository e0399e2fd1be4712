"""tunelab's own CPU kernels (``kernels.c``, ``adamw.c``, ``attention.c``, ``layers.c``),
compiled for this machine on first use.

PyTorch runs an element-wise chain such as dropout as several passes over memory, each a
dispatched operator (draw random words, compare, convert, multiply, scale), and a bf16 MiniLM
training step has about twenty of them. ``kernels.c`` does such a chain in one vectorised,
multi-threaded pass (dropout); ``adamw.c`` does the optimizer step with the bf16 casts
around it (:mod:`tunelab.training.native_adamw`); ``attention.c`` does attention (the whole
of a head with AVX-512 BF16, else its scale, mask, softmax and dropout in one pass per row;
:mod:`tunelab.training.fast_attention`), ``layers.c`` LayerNorm and GELU's gradient
(:mod:`tunelab.training.fast_layers`), these two with AVX-512 intrinsics, compiled only where
the CPU has them. It is C with no PyTorch
headers, so it compiles in about a second with the system's C compiler (``cc -O3 -march=native
-fopenmp``, see ``FLAGS``); the library is cached in ``$TUNELAB_CACHE/native`` (default
``~/.cache/tunelab/native``) under a key of the sources, the compiler, the flags and this
CPU, and called through ctypes on a tensor's memory.

Without a C compiler (or with ``TUNELAB_NATIVE=0``) :func:`library` returns None and every
caller keeps its pure-PyTorch path; a failed build says why once, on the ``tunelab`` logger.
``make install`` builds it, so the first training run does not wait.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

ENV = "TUNELAB_NATIVE"
SOURCES = tuple(
    Path(__file__).with_name(f) for f in ("kernels.c", "adamw.c", "attention.c", "layers.c")
)
# included by the sources: part of the cache key
HEADERS = tuple(
    Path(__file__).with_name(f) for f in ("bf16.h", "counter.h", "avx512.h", "threads.h")
)
# no contraction of a * b + c into one rounding: adamw.c repeats PyTorch's arithmetic exactly
FLAGS = (
    "-O3",
    "-march=native",
    "-fopenmp",
    "-fno-math-errno",
    "-ffp-contract=off",
    "-shared",
    "-fPIC",
    "-std=c11",
)
log = logging.getLogger("tunelab")

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_why = ""  # why the kernels could not be loaded

_i64, _u64, _u32, _u16 = ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_uint16
_ptr, _f32, _int, _f64 = ctypes.c_void_p, ctypes.c_float, ctypes.c_int, ctypes.c_double
SIGNATURES = {  # name: (argument types, return type)
    "dropout_f32": ((_ptr, _ptr, _i64, _u64, _u32, _f32, _int), None),
    "dropout_bf16": ((_ptr, _ptr, _i64, _u64, _u32, _f32, _int), None),
    "keep_mask16": ((_ptr, _i64, _u64, _u32, _u16, _int), None),
    "adamw_many": ((_i64, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _ptr, _int), None),
    "adamw_rows": ((_ptr, _ptr, _ptr, _i64, _i64, _ptr, _ptr, _i64, _ptr, _ptr, _int), None),
    "sum_squares": ((_i64, _ptr, _ptr, _ptr, _int), _f64),
    "attention_chain_available": ((), _int),
    "attention_chain_fwd": (
        (_ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _i64, _i64, _f32, _ptr, _ptr, _u64, _u32)
        + (_f32, _int),
        None,
    ),
    "attention_chain_bwd": (
        (_ptr, _ptr, _i64, _i64, _f32, _int, _u64, _u32, _f32, _ptr, _int),
        None,
    ),
    "attention_fused_available": ((), _int),
    "attention_fused_fwd": ((_ptr, _f32, _ptr, _ptr, _u64, _u32, _f32, _int, _int), None),
    "attention_fused_bwd": (
        (_ptr, _f32, _ptr, _ptr, _u64, _u32, _f32, _int, _ptr, _ptr, _ptr, _int),
        None,
    ),
    "layers_available": ((), _int),
    "layer_norm_fwd": ((_ptr, _ptr, _ptr, _i64, _i64, _f32, _ptr, _ptr, _ptr, _int), None),
    "layer_norm_bwd": ((_ptr, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _ptr, _ptr, _ptr, _int), None),
    "gelu_bwd": ((_ptr, _ptr, _ptr, _i64, _int), None),
}


def enabled() -> bool:
    """Whether the kernels may be used (``TUNELAB_NATIVE=0`` turns them off)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def compiler() -> str | None:
    """The C compiler: ``$CC``, else ``cc`` or ``gcc`` on the PATH."""
    cc = os.environ.get("CC")
    return shutil.which(cc) if cc else shutil.which("cc") or shutil.which("gcc")


def _cpu_key() -> str:
    """What ``-march=native`` depends on: the CPU's model and flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    keep = [ln for ln in lines if ln.startswith(("model name", "flags"))]
    return "\n".join(dict.fromkeys(keep))


def _path(cc: str) -> Path:
    from tunelab.models.registry import cache_dir

    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\0".join(
            [*(f.read_text() for f in SOURCES + HEADERS), cc, version, " ".join(FLAGS), _cpu_key()]
        ).encode()
    ).hexdigest()[:16]
    return cache_dir() / "native" / f"kernels-{key}.so"


def build() -> Path:
    """Compile the C sources into the cache (if they are not there yet) and return the path.

    Raises:
        RuntimeError: no C compiler, or the compiler failed (its message).
    """
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc or gcc) on the PATH")
    out = _path(cc)
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # written next to its final name, then renamed: a concurrent build never loads half a file
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        done = subprocess.run(
            [cc, *FLAGS, "-o", tmp, *map(str, SOURCES)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed: {(done.stderr or done.stdout).strip()[:500]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _load(path: Path) -> ctypes.CDLL:
    """Load the library; a cached file that does not load (cut short, from another system)
    is rebuilt once."""
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(build()))


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot be built (see the module docstring)."""
    global _lib, _tried
    if not enabled():
        return None
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            try:
                lib = _load(build())
                for name, (args, result) in SIGNATURES.items():
                    fn = getattr(lib, name)
                    fn.argtypes, fn.restype = args, result
                _lib = lib
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                global _why
                _why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
                log.warning("tunelab's CPU kernels are not available, using PyTorch's: %s", e)
            _tried = True
    return _lib


def loaded() -> ctypes.CDLL:
    """The kernels, for a caller that checked they are available (:func:`library` is not None,
    or :func:`supports`); raises RuntimeError where they are not."""
    lib = library()
    if lib is None:
        raise RuntimeError(f"tunelab's C kernels are not loaded: {describe()}")
    return lib


def supports(probe: str) -> bool:
    """Whether the kernels loaded and their ``probe`` function (``attention_chain_available``,
    ``layers_available``, ...: 1 where this CPU has what that kernel was compiled for) says so."""
    lib = library()
    return lib is not None and bool(getattr(lib, probe)())


def describe() -> str:
    """Which kernels this process has used, for the machine record of a run folder or a
    benchmark: ``tunelab C``, ``pytorch (why)``, or ``not used`` (nothing asked for them)."""
    if not enabled():
        return f"pytorch ({ENV}=0)"
    if not _tried:
        return "not used"
    return "tunelab C" if _lib is not None else f"pytorch ({_why})"
