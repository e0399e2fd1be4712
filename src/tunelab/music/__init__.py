"""Music generation (tunelab music): symbolic music read and cached (:mod:`.corpus`), encoded as
melody event tokens (:mod:`.encoding`), objective metrics from the literature (:mod:`.metrics`)
and the baselines every model is measured against (:mod:`.baselines`)."""
