"""The assistant's confidence: the probability that its top candidate answers the question,
from logistic regressions over the retrieval features (``retrieval.features``): the chance
the question is in scope times the chance its top candidate is right if it is, fitted on a
calibration set, and the hand-off threshold chosen on that set to reach a target precision
(of the questions answered, at least that share answered right), not set by hand.

The calibration set is the user's (``--validation``: question, and the id that answers it or
nothing for a question to hand off) or, without one, tunelab's reference questions for the
encoder (``prior``), or, for an encoder without them, questions made from the FAQ itself
(``calibrate.synthetic``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tunelab.errors import TunelabError


@dataclass
class Calibration:
    coef: list[float]
    intercept: float
    threshold: float
    target_precision: float
    report: dict
    # P(the question is one the KB answers); with it, ``coef`` is P(right | in scope)
    scope: dict | None = None

    def probability(self, feats: list[float]) -> float:
        p = _logistic(self.coef, self.intercept, feats)
        if self.scope is not None:
            p *= _logistic(self.scope["coef"], self.scope["intercept"], feats)
        return p

    def as_json(self) -> dict:
        out = {
            "coef": self.coef,
            "intercept": self.intercept,
            "threshold": self.threshold,
            "target_precision": self.target_precision,
            "report": self.report,
        }
        if self.scope is not None:
            out["scope"] = self.scope
        return out

    @classmethod
    def from_json(cls, d: dict) -> Calibration:
        return cls(
            d["coef"],
            d["intercept"],
            d["threshold"],
            d["target_precision"],
            d["report"],
            d.get("scope"),
        )


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _logistic(coef: list[float], intercept: float, feats: list[float]) -> float:
    # a KB calibrated before the coverage features reads the ones it was fitted on
    return float(_sigmoid(float(np.dot(coef, feats[: len(coef)]) + intercept)))


def _fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients on the raw features of a logistic regression fitted on standardised ones
    (so the penalty weighs every feature alike: coverage moves over a tenth of the range a
    rank feature does)."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = x.mean(0), x.std(0)
    sd[sd == 0] = 1.0
    lr = LogisticRegression(C=1.0, max_iter=1000).fit((x - mu) / sd, y)
    coef = lr.coef_[0] / sd
    return coef, float(lr.intercept_[0] - np.dot(coef, mu))


def fit(
    feats: list[list[float]],
    correct: list[bool],
    in_scope: list[bool],
    target_precision: float,
    source: str,
) -> Calibration:
    """``correct``: the top candidate is the right entry; ``in_scope``: the question has one.

    P(right) is fitted as P(in scope) * P(right | in scope) when the set has questions of
    both kinds and the in-scope ones are answered both right and wrong: each factor learns
    from its own labels (a ranking slip on an in-scope question no longer teaches the scope
    model that good coverage means a hand-off). Measured once on the Python FAQ (pretrained
    MiniLM, threshold at precision 0.9 on the dev half): on the test half it handed off 89%
    of out-of-scope questions instead of 84% at the same 15.5% of in-scope ones. Otherwise
    one model of P(right) over all questions."""
    y = np.asarray(correct, dtype=int)
    if y.min() == y.max():
        what = "right" if y[0] else "wrong"
        raise TunelabError(
            f"{source}: every calibration question is answered {what}; the hand-off threshold "
            "needs both (add questions the FAQ does not answer, or more paraphrases)"
        )
    x = np.asarray(feats, dtype=np.float64)
    ins = np.asarray(in_scope, dtype=bool)
    scope = None
    if 0 < ins.sum() < len(ins) and 0 < y[ins].sum() < ins.sum():
        s_coef, s_int = _fit_logistic(x, ins.astype(int))
        scope = {"coef": [float(c) for c in s_coef], "intercept": s_int}
        coef, intercept = _fit_logistic(x[ins], y[ins])
        p = _sigmoid(x @ coef + intercept) * _sigmoid(x @ s_coef + s_int)
    else:
        coef, intercept = _fit_logistic(x, y)
        p = _sigmoid(x @ coef + intercept)
    threshold = pick_threshold(p, y, target_precision)
    return Calibration(
        coef=[float(c) for c in coef],
        intercept=intercept,
        threshold=threshold,
        target_precision=target_precision,
        report=summary(p, y, ins, threshold, source),
        scope=scope,
    )


def pick_threshold(p: np.ndarray, y: np.ndarray, target: float) -> float:
    """The lowest threshold whose answered questions (p >= threshold) are right at least
    ``target`` of the time (answering as many as that allows); above every p when none is."""
    order = np.argsort(-p, kind="stable")
    hits = np.cumsum(y[order])
    precision = hits / np.arange(1, len(p) + 1)
    best = None
    for i in range(len(p)):
        # only where the next question has a lower probability (a threshold between them)
        if (i + 1 == len(p) or p[order[i + 1]] < p[order[i]]) and precision[i] >= target:
            best = i
    if best is None:
        return float(min(1.0, p.max() + 1e-6))
    return float(p[order[best]])


def summary(p: np.ndarray, y: np.ndarray, in_scope: np.ndarray, t: float, source: str) -> dict:
    answered = p >= t
    out = ~in_scope
    return {
        "source": source,
        "questions": int(len(p)),
        "in_scope": int(in_scope.sum()),
        "out_of_scope": int(out.sum()),
        "precision_answered": round(float(y[answered].mean()), 4) if answered.any() else None,
        "answered": round(float(answered.mean()), 4),
        "handoff_in_scope": round(float((~answered[in_scope]).mean()), 4)
        if in_scope.any()
        else None,
        "handoff_out_of_scope": round(float((~answered[out]).mean()), 4) if out.any() else None,
        "top1_in_scope": round(float(y[in_scope].mean()), 4) if in_scope.any() else None,
    }
