"""Cost-based decision threshold, chosen on out-of-fold scores from the training part only."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold that minimises fn_cost·FN + fp_cost·FP, and what it costs there."""

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


def _cut_counts(s: np.ndarray, t: np.ndarray):
    """For scores ``s`` sorted descending with labels ``t``: FN/FP when flagging the top k.

    Only cuts between distinct scores are possible, so k runs over those and the ends.
    """
    distinct = np.flatnonzero(np.diff(s)) + 1
    ks = np.concatenate(([0], distinct, [len(s)]))
    tp = np.concatenate(([0], np.cumsum(t)))[ks]
    fp = ks - tp
    fn = t.sum() - tp
    return s, ks, fn, fp


def _flag_counts(y: np.ndarray, scores: np.ndarray):
    """Per distinct score cut: scores sorted descending, and FN/FP when flagging the top k."""
    order = _descending(scores)
    return _cut_counts(scores[order], y[order])


def _check_costs(fn_cost: float, fp_cost: float) -> None:
    if fn_cost <= 0 or fp_cost <= 0:
        raise ValueError(f"costs must be > 0; got fn_cost={fn_cost}, fp_cost={fp_cost}")


def _best_cut(s, ks, fn, fp, *, fn_cost: float, fp_cost: float) -> ThresholdChoice:
    cost = fn_cost * fn + fp_cost * fp
    best = int(np.argmin(cost))  # first minimum: fewest flags
    k = int(ks[best])
    if k == 0:
        threshold = float(np.nextafter(s[0], np.inf)) if s[0] >= 1 else float((s[0] + 1.0) / 2)
    elif k == len(s):
        threshold = float(s[-1])
    else:
        threshold = float((s[k - 1] + s[k]) / 2)
    positives = int(fn[0])
    never_flag = fn_cost * positives
    return ThresholdChoice(
        threshold=threshold,
        cost=float(cost[best]),
        normalised_cost=float(cost[best] / never_flag) if never_flag else float("nan"),
        false_negatives=int(fn[best]),
        false_positives=int(fp[best]),
        flagged=k,
    )


def choose_threshold(y, scores, *, fn_cost: float, fp_cost: float) -> ThresholdChoice:
    """Choose the threshold minimising ``fn_cost·FN + fp_cost·FP`` on the given scores.

    A row is flagged when ``score >= threshold``. The threshold sits midway between the two
    distinct scores around the optimal cut, so it does not hug one training score. Ties in
    cost prefer flagging fewer rows.

    Example:
        >>> choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], fn_cost=10, fp_cost=1).threshold
        0.225
    """
    _check_costs(fn_cost, fp_cost)
    y, scores = _check_scores(y, scores)
    return _best_cut(*_flag_counts(y, scores), fn_cost=fn_cost, fp_cost=fp_cost)


def choose_thresholds_without(y, scores, groups, *, fn_cost: float,
                              fp_cost: float) -> list[ThresholdChoice]:
    """For each group of row positions, :func:`choose_threshold` on all the *other* rows.

    The rows are sorted once: dropping a group from the sorted order leaves the other rows
    sorted (ties still in row order), so each choice is exactly what ``choose_threshold``
    gives on the other rows, without a sort per group.
    """
    _check_costs(fn_cost, fp_cost)
    y, scores = _check_scores(y, scores)
    order = _descending(scores)
    s, t = scores[order], y[order]
    out = []
    for held in groups:
        keep = np.ones(len(y), dtype=bool)
        keep[held] = False
        kept = keep[order]
        out.append(_best_cut(*_cut_counts(s[kept], t[kept]), fn_cost=fn_cost,
                             fp_cost=fp_cost))
    return out


def expected_cost(y, decisions, *, fn_cost: float, fp_cost: float) -> float:
    """Total cost of 0/1 decisions."""
    y = np.asarray(y).astype(bool)
    d = np.asarray(decisions).astype(bool)
    return float(fn_cost * np.sum(y & ~d) + fp_cost * np.sum(~y & d))


def cost_curve(y, scores, *, fn_cost: float, fp_cost: float, points: int = 101):
    """Normalised cost at evenly spaced thresholds in [0, 1] (for the cost-vs-threshold plot)."""
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=float)
    grid = np.linspace(0.0, 1.0, points)
    flagged = scores[None, :] >= grid[:, None]
    fn = (~flagged & y[None, :]).sum(axis=1)
    fp = (flagged & ~y[None, :]).sum(axis=1)
    never = fn_cost * y.sum()
    return grid, (fn_cost * fn + fp_cost * fp) / (never if never else 1.0)
