"""Weights read into the process's own memory, checked, never memory-mapped.

Transformers memory-maps ``.safetensors`` files and keeps the mapped pages as the model's
parameters: a file truncated or rewritten underneath a running server then faults the whole
process (SIGBUS) on the next request that touches a lost page. Here a file is read once into
one buffer (hashed on the way when its checksum is known), its header is checked, and the
tensors are views into that buffer: no copy, so peak memory stays at the size of the weights,
and later changes to the file cannot reach the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from pathlib import Path
from typing import Any

import torch

from tunelab.errors import TunelabError
from tunelab.integrity import CHUNK, damage, refuse

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER = 100 << 20  # the safetensors format's own limit on the JSON header
INDEX = "model.safetensors.index.json"


def _bad(path: Path, why: str) -> TunelabError:
    return TunelabError(
        f"{path}: damaged weights file ({why}); re-create the folder (`tunelab train` or "
        "`tunelab export`) or restore it from a copy"
    )


def read_safetensors(path: str | Path, record: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, as views into one in-memory buffer.

    Args:
        path: the file.
        record: ``{"size", "sha256"}`` from the folder's ``tunelab.json``; the file must match
            it. Without one only the file's own structure is checked.
    Raises:
        TunelabError: missing, truncated, modified or malformed file (one line).
    """
    tensors, check = _read_tensors(Path(path), record)
    check()
    return tensors


def _read_tensors(path: Path, record: dict | None) -> tuple[dict[str, torch.Tensor], Any]:
    """(tensors, check): ``check()`` waits for the checksum, computed in a thread meanwhile
    (hashlib releases the GIL), and raises if it does not match."""
    buf = _read(path, record)
    if record is None:
        return _tensors(path, buf), lambda: None
    digest: list[str] = []
    worker = threading.Thread(target=lambda: digest.append(hashlib.sha256(buf).hexdigest()))
    worker.start()

    def check() -> None:
        worker.join()
        if digest != [record.get("sha256")]:
            raise refuse(
                path.parent, path.name, "does not match its checksum (corrupted or modified)"
            )

    try:
        return _tensors(path, buf), check
    except TunelabError:
        check()  # a checksum mismatch says more than a malformed header
        raise


def _read(path: Path, record: dict | None) -> bytearray:
    """The whole file in one buffer (its size checked against ``record`` first)."""
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 (closed below; fstat needs the fd)
    except FileNotFoundError:
        raise TunelabError(f"{path}: weights file is missing; the folder is incomplete") from None
    except OSError as e:
        raise TunelabError(f"{path}: cannot read the weights ({e.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if record is not None and size != int(record.get("size", -1)):
            raise refuse(path.parent, path.name, damage(path, record) or "changed size")
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = f.readinto(view[got : got + CHUNK])
            if not n:  # the file shrank while it was read
                raise _bad(path, f"ended after {got:,} of {size:,} bytes")
            got += n
    return buf


def _tensors(path: Path, buf: bytearray) -> dict[str, torch.Tensor]:
    """Check the header of a safetensors image and make the tensors as views into it."""
    if len(buf) < 8:
        raise _bad(path, f"{len(buf)} bytes, shorter than a header")
    n = int.from_bytes(buf[:8], "little")
    if n > MAX_HEADER or 8 + n > len(buf):
        raise _bad(path, "truncated or not a safetensors file: header length out of range")
    try:
        header = json.loads(bytes(buf[8 : 8 + n]))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad(path, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    start, room = 8 + n, len(buf) - 8 - n
    out: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        out[name] = _tensor(path, buf, start, room, name, entry)
    return out


def _tensor(path: Path, buf: bytearray, start: int, room: int, name: str, e: Any):
    try:
        dtype = DTYPES[e["dtype"]]
        shape = [int(d) for d in e["shape"]]
        a, b = (int(x) for x in e["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise _bad(path, f"tensor {name!r} has a malformed header entry") from None
    count = 1
    for d in shape:
        if d < 0:
            raise _bad(path, f"tensor {name!r} has a negative dimension")
        count *= d
    if not 0 <= a <= b <= room or b - a != count * dtype.itemsize:
        raise _bad(path, f"tensor {name!r} lies outside the file (truncated?)")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(buf, dtype=dtype, count=count, offset=start + a).view(shape)


def weight_files(folder: Path) -> list[Path] | None:
    """The safetensors files of a Transformers model folder (one file or an indexed set);
    None when it has none (``.bin`` or GGUF checkpoints load the usual way)."""
    one = folder / "model.safetensors"
    if one.is_file():
        return [one]
    index = folder / INDEX
    if index.is_file():
        try:
            shards = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise TunelabError(f"{index}: corrupt weights index") from None
        return [folder / s for s in shards]
    return None


class SharedWeights:
    """One base model's tensors, shared by every model loaded from it in this process; kept
    alive by those models (each holds a reference), gone when the last one is."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors


_shared: weakref.WeakValueDictionary[tuple, SharedWeights] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def sharing_enabled() -> bool:
    """``TUNELAB_SHARE_BASE=0`` turns sharing off (to measure what it saves)."""
    return os.environ.get("TUNELAB_SHARE_BASE", "1") != "0"


# what AutoTokenizer reads from a folder, besides files named tokenizer*
TOKENIZER_FILES = frozenset(
    {
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.txt",
        "vocab.json",
        "merges.txt",
        "spiece.model",
        "sentencepiece.bpe.model",
        "chat_template.jinja",
        "chat_template.json",
    }
)
_tokenizers: weakref.WeakValueDictionary[tuple, Any] = weakref.WeakValueDictionary()


def load_tokenizer(folder: Path, files: dict | None, use: tuple):
    """The folder's tokenizer; shared with every other folder loaded in this process whose
    tokenizer files have the same recorded checksums (runs on one base each save a copy of
    its tokenizer: Gemma's 262k-word one took most of the ~300 MB each further LoRA run on it
    added). Keyed by ``use`` too (the task, length limit, stride): a call sets the tokenizer's
    truncation, so only models that set it alike share one, and concurrent calls never change
    it under each other. Without recorded checksums (older folders), or with
    ``TUNELAB_SHARE_BASE=0``, each folder gets its own."""
    from transformers import AutoTokenizer

    key = None
    if files and sharing_enabled():
        mine = [
            (name, (info or {}).get("sha256"))
            for name, info in sorted(files.items())
            if name.startswith("tokenizer") or name in TOKENIZER_FILES
        ]
        if mine and all(h for _, h in mine):
            key = (tuple(mine), use)
            with _shared_lock:
                hit = _tokenizers.get(key)
            if hit is not None:
                return hit
    tok = AutoTokenizer.from_pretrained(str(folder))
    if key is not None:
        with _shared_lock:
            tok = _tokenizers.setdefault(key, tok)
    return tok


def _state(
    shards: list[Path], files: dict | None, dtype: torch.dtype | None, shared: bool
) -> tuple[dict[str, torch.Tensor], list, SharedWeights | None]:
    """The folder's tensors (floating ones in ``dtype`` when given), the checks to run once
    the model is built, and the shared holder when ``shared``: a second model from the same
    unchanged files (size and modification time) gets the same tensors, not a copy."""
    key = None
    if shared and sharing_enabled():
        stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in shards]
        key = (tuple(stats), str(dtype))
        with _shared_lock:
            hit = _shared.get(key)
        if hit is not None:
            return dict(hit.tensors), [], hit
    state: dict[str, torch.Tensor] = {}
    checks = []
    for f in shards:
        tensors, check = _read_tensors(f, (files or {}).get(f.name))
        state.update(tensors)
        checks.append(check)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    if key is None:
        return state, checks, None
    holder = SharedWeights(state)
    with _shared_lock:
        _shared[key] = holder
    return dict(state), checks, holder


def load_pretrained(
    auto_class,
    path: str,
    files: dict | None = None,
    shared: bool = False,
    dtype: torch.dtype | None = None,
    **kwargs,
):
    """``auto_class.from_pretrained(path, **kwargs)`` with the weights read by
    :func:`read_safetensors` (checked against ``files``, the folder's recorded checksums).

    Config keyword arguments (``num_labels``, dropout rates, ...) go to the config; the rest
    to the model, as ``from_pretrained`` does. ``dtype``: the model's floating-point type.
    ``shared``: models loaded from the same base folder share its tensors (``from_pretrained``
    keeps the given tensors as the parameters): three LoRA runs on one gemma3-270m hold one
    copy of it. Only for models nothing writes to in place (inference, never training or
    merging); head weights not in the base are each model's own."""
    from transformers import AutoConfig

    folder = Path(path)
    shards = weight_files(folder) if folder.is_dir() else None
    if shards is None:
        return auto_class.from_pretrained(path, **kwargs)
    config, rest = AutoConfig.from_pretrained(path, return_unused_kwargs=True, **kwargs)
    state, checks, holder = _state(shards, files, dtype, shared)
    if dtype is not None:
        rest["dtype"] = dtype
    mapping = getattr(auto_class, "_model_mapping", None)
    model_class = mapping[type(config)] if mapping is not None else auto_class
    try:  # the checksums are computed while the model is built
        model = model_class.from_pretrained(None, config=config, state_dict=state, **rest)
    finally:
        for check in checks:
            check()
    if holder is not None:
        model._tunelab_shared_weights = holder  # keeps the shared tensors' record alive
    # what from_pretrained(path) also sets: the source (PEFT records it as the base model)
    # and the folder's generation defaults (end-of-sequence ids, ...)
    model.config._name_or_path = str(path)
    model.name_or_path = str(path)
    if (folder / "generation_config.json").is_file() and model.can_generate():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(path)
    return model
