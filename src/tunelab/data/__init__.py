"""Readers with validation that names file, line and field; bundled data sets."""

from tunelab.data.readers import Row, read_rows, read_texts

__all__ = ["Row", "read_rows", "read_texts"]
