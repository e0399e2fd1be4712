"""Model sources: offline aliases, local Hugging Face folders, and hub ids."""

from tunelab.models.registry import ALIASES, ModelAlias, resolve_model

__all__ = ["ALIASES", "ModelAlias", "resolve_model"]
