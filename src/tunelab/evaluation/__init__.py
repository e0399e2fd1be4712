"""Evaluation reports (JSON + a self-contained HTML page with plots)."""
