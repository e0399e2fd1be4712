"""``tunelab serve``: fine-tuned models behind an authenticated, observable HTTP API.

Built on FastAPI and uvicorn. ``settings`` (what the command line asked for, passed to worker
processes through the environment), ``keys`` (hashed API keys), ``guard`` (rate limits and
masking of personal data in logs), ``batcher`` (dynamic micro-batching), ``metrics``
(Prometheus) and ``app`` (the endpoints).
"""
