"""tunelab: fine-tune pretrained transformers on your own labelled data and put them to work.

>>> import tunelab
>>> m = tunelab.load("runs/reviews")
>>> m.predict(["great phone", "broke in a day"])
[{'label': 'positive', 'score': 0.97, 'probabilities': {...}}, ...]
"""

from tunelab.version import __version__


def load(path, device=None, precision="auto"):
    """Load a run folder written by ``tunelab train`` (or ``{name: folder}``: several, sharing
    their base); see :func:`tunelab.loading.load`."""
    from tunelab.loading import load as _load

    return _load(path, device=device, precision=precision)


def load_stages(path, device=None, precision="auto"):
    """Load the stages of a ``--continual lora-per-task`` run on one base, by stage number;
    see :func:`tunelab.evaluation.stages.load_stages`."""
    from tunelab.evaluation.stages import load_stages as _load_stages

    return _load_stages(path, device=device, precision=precision)


__all__ = ["__version__", "load", "load_stages"]
