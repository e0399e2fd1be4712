"""``tunelab serve``: fine-tuned models behind an authenticated, observable HTTP API.

A part of the one web application (:mod:`tunelab.web`, which holds the keys, the admission
guard, the error model and the Prometheus metrics every part shares). ``settings`` (what the
command line asked for, passed to worker processes through the environment), ``batcher``
(dynamic micro-batching), ``schemas`` (request and response bodies), ``function_routes`` and
``app`` (the serving part and the app made of it), ``launch`` (the command).
"""
