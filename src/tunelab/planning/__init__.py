"""Planning: from a data file and a goal to a measured training plan (``tunelab plan``), and
from a compound request to a validated program of task-function calls.

- :mod:`tunelab.planning.inspect`: what a data file holds (columns, target shape, language,
  size, balance, lengths) and which task it is;
- :mod:`tunelab.planning.choose`: model, method and hyper-parameters, each with its reason;
- :mod:`tunelab.planning.probe`: a few real training steps on this machine, timed and
  measured, and the estimate of the whole run from them (the studio's estimator);
- :mod:`tunelab.planning.budget`: what to cut when a budget of time or memory is not met;
- :mod:`tunelab.planning.trainplan`: the plan itself, its YAML and its printout.
"""
