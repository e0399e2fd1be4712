"""Task heads that Transformers lacks for some decoder models.

Gemma 3 (text) has a sequence-classification class but no token-classification or
question-answering class, so ``AutoModelForTokenClassification`` refuses it. Transformers ships
generic heads (a linear layer on ``AutoModel``'s hidden states) that its Llama, Qwen, ... classes
are built from; we compose the same for Gemma 3 and register them with the Auto classes, so the
tasks load every model the same way and the saved folders reload with plain Transformers once
this module is imported.
"""

from __future__ import annotations

_registered = False


def register_decoder_heads() -> None:
    """Register the missing Auto classes once (idempotent, cheap)."""
    global _registered
    if _registered:
        return
    from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification
    from transformers.modeling_layers import (
        GenericForQuestionAnswering,
        GenericForTokenClassification,
    )
    from transformers.models.gemma3.configuration_gemma3 import Gemma3TextConfig
    from transformers.models.gemma3.modeling_gemma3 import Gemma3PreTrainedModel

    class Gemma3TextForTokenClassification(GenericForTokenClassification, Gemma3PreTrainedModel):
        config_class = Gemma3TextConfig
        # as transformers' own Gemma3Text* models; its unannotated Gemma3PreTrainedModel value
        # ("image", "text") makes mypy infer tuple[str, str] for every subclass
        input_modalities = ("text",)  # type: ignore[assignment]

    class Gemma3TextForQuestionAnswering(GenericForQuestionAnswering, Gemma3PreTrainedModel):
        config_class = Gemma3TextConfig
        input_modalities = ("text",)  # type: ignore[assignment]  # as above

    AutoModelForTokenClassification.register(
        Gemma3TextConfig, Gemma3TextForTokenClassification, exist_ok=True
    )
    AutoModelForQuestionAnswering.register(
        Gemma3TextConfig, Gemma3TextForQuestionAnswering, exist_ok=True
    )
    _registered = True
