"""What a model folder holds, recorded when it is written and checked when it is loaded.

``tunelab.json`` lists every file of its folder with its size and SHA-256 (``files``), written
by :func:`tunelab.runs.write_run` as the last step, so a finished folder always describes
itself. Loading checks the list: a file needed to predict (weights, configuration, tokenizer,
ONNX graph) that is missing, shorter, longer or different refuses to load with one line naming
the file; the documents (report, plots, training log, metrics, TensorBoard events) are only
flagged, since a model predicts the same without them. Folders written before the list existed
load with a one-line warning.

Large weight files are checked while they are read into memory
(:func:`tunelab.models.weights.read_safetensors`), so they are read once, not twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from tunelab.errors import TunelabError

log = logging.getLogger("tunelab")
RUN_FILE = "tunelab.json"
CHUNK = 1 << 22
# a model predicts the same without these: a damaged one is reported, not refused
DOCUMENTS = ("report.html", "train_log.jsonl", "metrics.json", "config.yaml", "README.md")
DOCUMENT_DIRS = ("plots", "tensorboard", "mlruns")


def is_document(name: str) -> bool:
    """Whether the file at relative path ``name`` is only a document of the run."""
    parts = name.split("/")
    return parts[0] in DOCUMENT_DIRS or (len(parts) == 1 and name in DOCUMENTS)


def sha256_file(path: Path) -> tuple[int, str]:
    """(size, hex SHA-256) of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            size += n
    return size, h.hexdigest()


def record_files(folder: Path) -> dict[str, dict]:
    """``{relative path: {"size", "sha256"}}`` for every file under ``folder`` except
    ``tunelab.json`` and nested model folders (ensemble members), which list their own."""
    out: dict[str, dict] = {}
    folder = Path(folder)
    for root, dirs, names in os.walk(folder):
        here = Path(root)
        # a nested folder with its own tunelab.json describes itself
        dirs[:] = sorted(d for d in dirs if not (here / d / RUN_FILE).is_file())
        for name in sorted(names):
            rel = (here / name).relative_to(folder).as_posix()
            if rel == RUN_FILE:
                continue
            size, digest = sha256_file(here / name)
            out[rel] = {"size": size, "sha256": digest}
    return out


def damage(path: Path, record: dict, digest: str | None = None) -> str | None:
    """Why ``path`` does not match ``record`` (None when it does). ``digest``: the file's
    SHA-256 when the caller computed it already."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "is missing"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    want = int(record.get("size", -1))
    if size != want:
        return f"has {size:,} bytes, {want:,} expected (truncated or replaced)"
    if digest is None:
        try:
            digest = sha256_file(path)[1]
        except OSError as e:
            return f"cannot be read ({e.strerror})"
    if digest != record.get("sha256"):
        return "does not match its checksum (corrupted or modified)"
    return None


def read_checked(path: Path, record: dict | None) -> bytes:
    """A whole file read into memory, checked against its ``record`` when there is one."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TunelabError(f"{path}: missing; the folder is incomplete") from None
    except OSError as e:
        raise TunelabError(f"{path}: cannot be read ({e.strerror})") from None
    if record is not None:
        if len(data) != int(record.get("size", -1)):
            why = f"has {len(data):,} bytes, {int(record.get('size', -1)):,} expected"
            raise refuse(path.parent, path.name, why + " (truncated or replaced)")
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            raise refuse(
                path.parent, path.name, "does not match its checksum (corrupted or modified)"
            )
    return data


def refuse(folder: Path, rel: str, why: str) -> TunelabError:
    return TunelabError(
        f"{folder}: damaged model folder, {rel} {why}; re-create it (`tunelab train` or "
        "`tunelab export`) or restore it from a copy"
    )


def check_folder(folder: Path, files: dict | None, deferred: tuple[str, ...] = ()) -> None:
    """Check ``folder`` against its recorded ``files`` (from ``tunelab.json``).

    Files needed to predict raise :class:`TunelabError` when damaged; documents are logged as
    warnings. ``deferred``: files the caller verifies itself while reading them (weights)."""
    folder = Path(folder)
    if not files:
        log.warning(
            "%s: written before tunelab recorded file checksums; loading it unverified "
            "(re-save it with this version to add them)",
            folder,
        )
        return
    for rel, record in files.items():
        if rel in deferred:  # checked while read; only its presence here
            why = None if (folder / rel).is_file() else "is missing"
        else:
            why = damage(folder / rel, record)
        if why is None:
            continue
        if is_document(rel):
            log.warning("%s: %s %s (the model still loads)", folder, rel, why)
        else:
            raise refuse(folder, rel, why)
