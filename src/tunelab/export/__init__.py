"""Exports of a run folder: merged Transformers folders (more formats build on this)."""

from tunelab.export.merge import export_merged

__all__ = ["export_merged"]
