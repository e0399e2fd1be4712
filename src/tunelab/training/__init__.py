"""The training loop (explicit and short) and the pipeline that turns a config into a run folder."""
