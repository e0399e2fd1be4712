"""A sequence classifier that reads the mean-pooled, unit-length sentence embedding instead of
the architecture's own summary token (BERT's [CLS] pooler, a decoder's last token).

This is the head of a SetFit model (Tunstall et al., 2022): the encoder is first trained
contrastively so that its mean-pooled embeddings separate the classes
(:mod:`tunelab.methods.setfit`), and a linear classifier then reads those embeddings. A run
records ``"pooling": "mean"`` in its spec; :func:`mean_pooled` turns the task's freshly built
Transformers classifier into this one by swapping its class (the weights and their names do not
change, so ``save_pretrained`` and loading are the usual ones, and the folder's config still
names the base class: outside tunelab the model would pool the usual way, which is why a
mean-pooled run has no ``--format hf`` export and ONNX traces this forward instead).
"""

from __future__ import annotations

import torch

from tunelab.errors import ConfigError
from tunelab.tasks.sentence_embedding import mean_pool

HEADS = ("classifier", "score")  # a linear layer over the hidden size, by architecture


def linear_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The model's classification layer when it is one linear layer over the hidden states."""
    for name in HEADS:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
    raise ConfigError(
        f"mean pooling needs a classifier that is one linear layer ({type(model).__name__} "
        "has none); use an encoder such as MiniLM or a decoder such as Gemma"
    )


def encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The bare encoder (or decoder stack) under the classification head."""
    base = getattr(model, "base_model", None)
    if base is None or base is model:
        raise ConfigError(f"{type(model).__name__} has no base model under its head")
    return base


def _pooled_class(base: type) -> type:
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPooled(base):
        """``base`` whose logits read the mean-pooled, normalised embedding."""

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            kwargs.pop("labels", None)
            kwargs.pop("return_dict", None)
            out = encoder(self)(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            head = linear_head(self)
            emb = mean_pool(out.last_hidden_state, attention_mask).to(head.weight.dtype)
            return SequenceClassifierOutput(logits=head(emb))

    MeanPooled.__name__ = MeanPooled.__qualname__ = base.__name__  # config.json names the base
    MeanPooled._tunelab_pooling = "mean"
    return MeanPooled


def mean_pooled(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (a Transformers sequence classifier) reading mean-pooled embeddings."""
    linear_head(model)  # refuse early a head that is not one linear layer
    encoder(model)
    if getattr(type(model), "_tunelab_pooling", None) != "mean":
        model.__class__ = _pooled_class(type(model))
    return model


def is_mean_pooled(model: torch.nn.Module) -> bool:
    return getattr(type(model), "_tunelab_pooling", None) == "mean"
