"""Loading-time helpers around Transformers that training and the loaders both need."""

from __future__ import annotations

import torch


def quiet_transformers() -> None:
    """Hide load-time chatter (progress bars, 'newly initialized head' notices)."""
    import warnings

    import transformers

    # PEFT 0.21 calls an API that transformers 5 deprecates; nothing a user can act on
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    # PEFT's prefix tuning still passes past_key_values, which transformers 5 renamed
    warnings.filterwarnings("ignore", message=".*`past_key_values` is deprecated.*")
    warnings.filterwarnings("ignore", message=".*Both `past_key_values` and `cache` are set.*")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def align_pad(model: torch.nn.Module, tokenizer) -> None:
    """Decoder models often ship without a pad token; sequence heads need one to find the
    last real token. Use the end-of-sequence token, as the Transformers docs suggest."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id


def is_causal(path: str) -> bool:
    """Whether the model is a decoder-only LM (its checkpoint is a ...ForCausalLM)."""
    from transformers import AutoConfig

    arch = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    return any(a.endswith("ForCausalLM") for a in arch)


def pad_id(tokenizer) -> int:
    """The id batches are padded with (0 when the tokenizer has none)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


# encoders whose position ids start after the padding index: two positions are never used
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer")


def position_limit(model) -> int | None:
    """The most tokens one sequence can hold in ``model`` (its learnt positions); None when
    it does not say (ONNX graphs, rotary-position decoders still report theirs)."""
    config = getattr(model, "config", None)
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or n <= 0:
        return None
    return n - 2 if getattr(config, "model_type", "") in _OFFSET_POSITIONS else n
