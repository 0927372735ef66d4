"""Cost-based decision threshold, chosen on out-of-fold scores from the training part only.

A missed positive costs ``fn_cost`` (or its own amount, per row: a missed fraud costs what it
took), a false alarm costs ``fp_cost`` (a review). The threshold minimises the total, subject
to the review team's capacity (``max_alert_rate``: at most that share of rows flagged) and a
floor on minority recall (``min_recall``). A constraint no threshold can meet is an error that
says which one and the best value reachable.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from schemas.errors import ConfigError
from tasks.decision.costs import DecisionCosts, normalised
from tasks.decision.served_classifier import decide

logger = logging.getLogger(__name__)


class InfeasibleConstraint(ConfigError):
    """No threshold meets the decision constraints (exit 2: a configuration to change)."""


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold that minimises the cost (within the constraints), and what it costs."""

    threshold: float
    cost: float
    normalised_cost: float
    false_negatives: int
    false_positives: int
    flagged: int

    def as_dict(self) -> dict:
        return asdict(self)


def _check_scores(y, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if y.shape != scores.shape or y.ndim != 1:
        raise ValueError(f"y and scores must be 1-D of equal length; got {y.shape}, {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return y, scores


def _descending(scores: np.ndarray) -> np.ndarray:
    """Positions by decreasing score; ties keep row order (a stable sort)."""
    return np.argsort(-scores, kind="mergesort")


def _cut_counts(s: np.ndarray, t: np.ndarray, m: np.ndarray | None = None):
    """For scores ``s`` sorted descending with labels ``t`` (and miss costs ``m`` of the
    positives, if per row): FN, FP and the missed cost when flagging the top k.

    Only cuts between distinct scores are possible, so k runs over those and the ends.
    """
    distinct = np.flatnonzero(np.diff(s)) + 1
    ks = np.concatenate(([0], distinct, [len(s)]))
    tp = np.concatenate(([0], np.cumsum(t)))[ks]
    fp = ks - tp
    fn = t.sum() - tp
    missed = None if m is None else m.sum() - np.concatenate(([0.0], np.cumsum(m)))[ks]
    return s, ks, fn, fp, missed


def _threshold_at(s: np.ndarray, k: int) -> float:
    if k == 0:
        return float(np.nextafter(s[0], np.inf)) if s[0] >= 1 else float((s[0] + 1.0) / 2)
    if k == len(s):
        return float(s[-1])
    mid = (s[k - 1] + s[k]) / 2
    return float(mid if mid > s[k] else s[k - 1])  # adjacent floats: the midpoint rounds down


def alert_budget(rows: int, max_alert_rate: float | None) -> int | None:
    """The most of ``rows`` that ``max_alert_rate`` lets a model flag (None: no cap)."""
    return None if max_alert_rate is None else int(np.floor(max_alert_rate * rows + 1e-9))


def capped_decisions(decisions, scores, budget: int | None, weights=None) -> np.ndarray:
    """Decisions with at most ``budget`` rows flagged: of the flagged rows, those of highest
    score (ties in row order), as a review team that works through its queue by score. With
    ``weights`` (a negative sample) each row counts the population rows it stands for."""
    d = np.asarray(decisions).astype(bool)
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=float)
    if budget is None or w[d].sum() <= budget + 1e-9:
        return d
    flagged = np.flatnonzero(d)
    queue = flagged[np.argsort(-np.asarray(scores, dtype=float)[flagged], kind="stable")]
    keep = queue[np.cumsum(w[queue]) <= budget + 1e-9]
    out = np.zeros(len(d), dtype=bool)
    out[keep] = True
    return out


def _feasible(ks, fn, fp, n: int, costs: DecisionCosts) -> np.ndarray:
    """Which cuts meet the constraints; raises with the best reachable value if none does.
    Flagged rows count in the population's rows (a negative sample's negatives weigh)."""
    ok = np.ones(len(ks), dtype=bool)
    positives = int(fn[0])
    recall = (positives - fn) / positives if positives else np.ones(len(ks))
    flagged = costs.in_population(ks, ks - fp)
    budget = alert_budget(costs.in_population(n, positives), costs.max_alert_rate)
    if budget is not None:
        ok &= flagged <= budget + 1e-9
    if costs.min_recall is not None:
        ok &= recall >= costs.min_recall - 1e-12
    if ok.any():
        return ok
    if costs.min_recall is not None and costs.max_alert_rate is not None:
        capped = flagged <= budget + 1e-9
        raise InfeasibleConstraint(
            f"min_recall {costs.min_recall:g} cannot be met with max_alert_rate "
            f"{costs.max_alert_rate:g}: within that many alerts the best reachable recall is "
            f"{recall[capped].max():.3f}; lower min_recall or raise max_alert_rate")
    # an alert budget alone always allows flagging nothing, and flagging every row reaches
    # recall 1: only a data set without positives gets here
    raise InfeasibleConstraint(f"min_recall {costs.min_recall:g} cannot be met: there are no "
                               "positives to recall")


def _best_cut(s, ks, fn, fp, missed, *, costs: DecisionCosts) -> ThresholdChoice:
    miss = costs.fn_cost * fn if missed is None else missed
    cost = miss + costs.false_alarm_cost * fp
    if costs.constrained:
        cost = np.where(_feasible(ks, fn, fp, len(s), costs), cost, np.inf)
    best = int(np.argmin(cost))  # first minimum: fewest flags
    k = int(ks[best])
    never_flag = float(miss[0])
    return ThresholdChoice(
        threshold=_threshold_at(s, k),
        cost=float(cost[best]),
        normalised_cost=normalised(cost[best], never_flag),
        false_negatives=int(fn[best]),
        false_positives=int(fp[best]),
        flagged=k,
    )


def _sorted(y, scores, costs: DecisionCosts):
    order = _descending(scores)
    m = costs.miss_costs(y)[order] if costs.per_row else None
    return scores[order], y[order], m


def choose_threshold(y, scores, *, costs: DecisionCosts) -> ThresholdChoice:
    """Choose the threshold minimising ``fn_cost·FN + fp_cost·FP`` on the given scores.

    A row is flagged when ``score >= threshold``. The threshold sits midway between the two
    distinct scores around the optimal cut, so it does not hug one training score. Ties in
    cost prefer flagging fewer rows. With ``costs`` carrying per-row miss costs, a missed
    positive costs its own amount; its constraints limit the cuts allowed.

    Raises:
        InfeasibleConstraint: no threshold meets the constraints.

    Example:
        >>> costs = DecisionCosts(fn_cost=10, fp_cost=1)
        >>> choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], costs=costs).threshold
        0.225
    """
    y, scores = _check_scores(y, scores)
    s, t, m = _sorted(y, scores, costs)
    return _best_cut(*_cut_counts(s, t, m), costs=costs)


def choose_thresholds_without(y, scores, groups, *,
                              costs: DecisionCosts) -> list[ThresholdChoice]:
    """For each group of row positions, :func:`choose_threshold` on all the *other* rows.

    The rows are sorted once: dropping a group from the sorted order leaves the other rows
    sorted (ties still in row order), so each choice is exactly what ``choose_threshold``
    gives on the other rows, without a sort per group.
    """
    y, scores = _check_scores(y, scores)
    order = _descending(scores)
    s, t, m = _sorted(y, scores, costs)
    out = []
    for held in groups:
        keep = np.ones(len(y), dtype=bool)
        keep[held] = False
        kept = keep[order]
        out.append(_best_cut(*_cut_counts(s[kept], t[kept], None if m is None else m[kept]),
                             costs=costs))
    return out


def cost_curve(y, scores, *, costs: DecisionCosts, points: int = 101):
    """Normalised cost at evenly spaced thresholds in [0, 1] (for the cost-vs-threshold plot)."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=float)
    grid = np.linspace(0.0, 1.0, points)
    flagged = decide(scores[None, :], grid[:, None])
    missed = (~flagged & y[None, :]).astype(float) @ costs.miss_costs(y)
    fp = (flagged & ~y[None, :]).sum(axis=1)
    return grid, normalised(missed + costs.false_alarm_cost * fp, costs.never_flag(y))
