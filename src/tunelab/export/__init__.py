"""Exports of a run folder: merged Transformers folders, ONNX graphs, int8, pruned."""

from tunelab.export.build import FORMATS, export_merged, export_model

__all__ = ["FORMATS", "export_merged", "export_model"]
