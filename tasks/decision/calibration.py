"""Platt scaling on the logit of a score: the calibration map and its fit."""

from __future__ import annotations

import numpy as np

LOGIT_EPS = 1e-12  # scores are clipped to [eps, 1 - eps] before taking logits


def to_logit(scores) -> np.ndarray:
    """Logit of scores clipped to [LOGIT_EPS, 1 - LOGIT_EPS] (strictly increasing inside)."""
    p = np.clip(np.asarray(scores, dtype=float), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def apply_platt(scores, slope: float, intercept: float) -> np.ndarray:
    """Calibrated probability ``sigmoid(slope * logit(score) + intercept)``."""
    z = slope * to_logit(scores) + intercept
    return 0.5 * (1 + np.tanh(z / 2))  # the logistic function, without overflow warnings


def population_shift(rate: float) -> tuple[float, float]:
    """The Platt map (slope, intercept) that puts the scores of a model trained on a negative
    sample (every positive, ``rate`` of the negatives) back at the population's prevalence:
    ``q = p / (p + (1 - p) / rate)`` (He et al. 2014, "Practical lessons from predicting clicks
    on ads at Facebook"), which is ``logit q = logit p + ln(rate)``. Strictly increasing, so
    rankings and cuts are unchanged."""
    return 1.0, float(np.log(rate))


def population_scores(scores, rate: float) -> np.ndarray:
    """:func:`population_shift` applied to scores (as the served model applies it)."""
    return apply_platt(scores, *population_shift(rate))


def fit_platt(y, scores, *, start: tuple[float, float] | None = None) -> tuple[float, float]:
    """Fit ``sigmoid(a * logit(score) + b)`` to labels (Platt scaling on the logit).

    A pure shift ``b`` is the classic prior correction for class weights or resampling; the
    slope ``a`` also fixes over- or under-confident scores. Fit it on out-of-fold scores,
    never on the training predictions of the model it calibrates.

    The objective is scikit-learn's ``LogisticRegression(C=1.0)`` on the one feature
    ``logit(score)``: log loss plus ``a**2 / 2`` (mild regularisation: a perfectly separating
    score would otherwise get an endless slope; the intercept is not penalised). It is solved
    by Newton's method with step halving, which converges in a few passes over the rows
    (``start``: a close solution to begin from, e.g. the map fitted on all rows).

    Returns:
        (slope, intercept); the slope is positive when scores rank positives higher.
    """
    y = np.asarray(y).astype(np.float64)
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("calibration needs both classes among the labels")
    x = to_logit(scores)

    def loss(a, b):  # log(1 + e^z) - y z, summed, plus the slope penalty
        z = a * x + b
        return float(np.logaddexp(0.0, z).sum() - y @ z + 0.5 * a * a)

    if start is None:  # the best constant: intercept = log odds of the labels
        rate = y.mean()
        a, b = 0.0, float(np.log(rate) - np.log1p(-rate))
    else:
        a, b = float(start[0]), float(start[1])
    current = loss(a, b)
    for _ in range(100):
        p = 0.5 * (1 + np.tanh((a * x + b) / 2))
        r, w = p - y, p * (1 - p)
        grad = np.array([x @ r + a, r.sum()])
        wx = w * x
        hess = np.array([[wx @ x + 1.0, wx.sum()], [wx.sum(), w.sum()]])
        # the Hessian is positive definite (the slope penalty adds 1 to its first entry)
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        size = 1.0
        while size > 1e-10:  # halve the step until the loss does not rise
            trial = loss(a - size * step[0], b - size * step[1])
            if trial <= current:
                break
            size /= 2
        else:
            break  # no step lowers the loss: converged to rounding
        a, b, current = a - size * step[0], b - size * step[1], trial
        if np.max(np.abs(size * step)) < 1e-9 * (1 + abs(a) + abs(b)):
            break
    return float(a), float(b)
