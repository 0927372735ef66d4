"""An early warning before labels mature: recall and expected cost *estimated* from the model's
calibrated scores, for rows whose labels are not known yet (confidence-based performance
estimation, CBPE, as in NannyML).

A calibrated score is the probability the row is positive, so the expected number of positives
the model flags is the sum of the scores above the threshold, and the expected number it misses
the sum below it. Scores are calibrated on the version's reference (its test rows, labels and
scores: an isotonic map, as NannyML does), so the estimate holds whether or not the model itself
was calibrated.

What it can and cannot see: the estimate moves when the *inputs* move to where the model is
less sure (covariate shift). It cannot see a change of the link between inputs and label
(concept drift): the model still believes its scores there. It is reported beside the realised
recall of matured rows, marked as an estimate, and raises drift only when configured to.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import norm
from sklearn.isotonic import IsotonicRegression

from tasks.decision.costs import DecisionCosts, normalised

logger = logging.getLogger(__name__)

ESTIMATED_DROP = "estimated-drop"
NO_ESTIMATED_DROP = "no-estimated-drop"
CANNOT_ESTIMATE = "cannot-estimate"
METHOD = ("CBPE: expected positives above and below the threshold from scores calibrated on "
          "the reference (isotonic); an estimate, not a measurement")


def reference_calibration(scores, y, weights=None) -> IsotonicRegression:
    """A monotone map from score to P(positive), fitted on the reference rows (``weights``:
    how many rows of the population each stands for, for a negative sample's)."""
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        np.asarray(scores, dtype=float), np.asarray(y, dtype=float), sample_weight=weights)


@dataclass(frozen=True)
class Estimate:
    """Estimated figures of rows without matured labels, against the reference's estimate."""

    status: str
    reason: str
    rows: int
    expected_positives: float
    estimated_recall: float | None
    recall_std_error: float | None
    reference_recall: float | None
    estimated_expected_cost: float | None
    estimated_normalised_cost: float | None
    tolerance: float
    confidence: float
    method: str = METHOD

    def as_dict(self) -> dict:
        return {"is_estimate": True, **asdict(self)}


def expected_figures(p: np.ndarray, decisions: np.ndarray, *, costs: DecisionCosts,
                     weights=None) -> dict:
    """Expected confusion counts, recall (with its standard error) and cost of decisions when
    each row is positive with probability ``p``; with per-row ``costs`` (bound to these rows)
    a miss costs its row's value (money) instead of ``fn_cost``; ``weights``: how many rows
    each row stands for (a negative sample's reference)."""
    d = np.asarray(decisions).astype(bool)
    n = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=float)
    tp, fn, fp = (n * p)[d].sum(), (n * p)[~d].sum(), (n * (1 - p))[d].sum()
    positives = tp + fn
    if positives <= 0:
        return {"positives": 0.0, "recall": None, "se": None, "cost": costs.fp_cost * fp,
                "normalised": None}
    v = n * n * p * (1 - p)
    var_tp, var_fn = v[d].sum(), v[~d].sum()
    se = float(np.sqrt(fn**2 * var_tp + tp**2 * var_fn) / positives**2)
    cost, never = costs.expected_given(p, d, weights=weights)
    return {"positives": float(positives), "recall": float(tp / positives), "se": se,
            "cost": cost, "normalised": normalised(cost, never, empty=None)}


def estimate_recall(scores, decisions, *, calibration: IsotonicRegression, reference_scores,
                    reference_decisions, costs: DecisionCosts, reference_costs: DecisionCosts,
                    tolerance: float, confidence: float, min_positives: float,
                    reference_weights=None) -> Estimate:
    """Estimate recall and cost of rows whose labels have not matured, and say whether the
    estimated recall is more than ``tolerance`` below the reference's beyond its uncertainty.

    ``costs`` and ``reference_costs`` are the version's costs bound to the rows awaiting
    labels and to the reference rows (per-row costs: each row's amount);
    ``reference_weights``: the rows of the population each reference row stands for.

    Example:
        >>> cal = reference_calibration([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
        >>> costs = DecisionCosts(fn_cost=10, fp_cost=1)
        >>> e = estimate_recall([0.9, 0.1], [1, 0], calibration=cal,
        ...     reference_scores=[0.9], reference_decisions=[1], costs=costs,
        ...     reference_costs=costs, tolerance=0.05, confidence=0.95, min_positives=1)
        >>> e.status, e.estimated_recall
        ('no-estimated-drop', 1.0)
    """
    scores = np.asarray(scores, dtype=float)
    ref = expected_figures(calibration.predict(np.asarray(reference_scores, dtype=float)),
                           reference_decisions, costs=reference_costs,
                           weights=reference_weights)
    batch = (expected_figures(calibration.predict(scores), decisions, costs=costs)
             if len(scores)
             else {"positives": 0.0, "recall": None, "se": None, "cost": None,
                   "normalised": None})
    base = {"rows": int(len(scores)), "expected_positives": round(batch["positives"], 3),
            "estimated_recall": batch["recall"], "recall_std_error": batch["se"],
            "reference_recall": ref["recall"], "estimated_expected_cost": batch["cost"],
            "estimated_normalised_cost": batch["normalised"], "tolerance": float(tolerance),
            "confidence": float(confidence)}
    if batch["positives"] < min_positives or ref["recall"] is None:
        return Estimate(CANNOT_ESTIMATE, f"{batch['positives']:.1f} expected positives among "
                        f"{len(scores)} rows awaiting labels; at least {min_positives} are "
                        "needed to estimate recall", **base)
    bound = batch["recall"] + norm.ppf(confidence) * batch["se"]
    drop = bound < ref["recall"] - tolerance
    reason = (f"estimated recall {batch['recall']:.3f} (upper {confidence:.0%} bound "
              f"{bound:.3f}) on {len(scores)} rows awaiting labels vs {ref['recall']:.3f} "
              f"estimated on the reference: {'more' if drop else 'not more'} than "
              f"{tolerance:.3g} below")
    logger.info("Early warning (estimate): %s", reason)
    return Estimate(ESTIMATED_DROP if drop else NO_ESTIMATED_DROP, reason, **base)
