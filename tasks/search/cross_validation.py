"""Cross-validation of one candidate on the training part's folds: out-of-fold scores, the
cost threshold, and an honest CV cost (each fold judged at a threshold from the others)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss

from schemas.errors import ConfigError
from schemas.inference import InputSchema
from tasks.decision.costs import DecisionCosts
from tasks.decision.served_classifier import decide, positive_scores
from tasks.decision.threshold import choose_thresholds_without
from tasks.runtime._heap import trim_heap
from tasks.search._fold_memory import fit_on_rows
from tasks.search.candidates import CandidateSpec
from tasks.search.estimators import sequential_prediction
from tasks.search.pipeline import pipeline_for

logger = logging.getLogger(__name__)

OK, FAILED, SKIPPED, DROPPED = "ok", "failed", "skipped", "dropped"


@dataclass
class CVResult:
    """A candidate's cross-validated performance and its out-of-fold scores."""

    spec: CandidateSpec
    oof_scores: np.ndarray
    threshold: float
    cv_cost: float  # mean normalised cost per fold, each fold at a threshold from the others
    cv_cost_std: float
    oof_cost: float  # normalised cost of all OOF scores at the chosen threshold
    pr_auc: float
    fit_seconds: float
    error: str | None = None
    fold_costs: list = field(default_factory=list)
    status: str = OK  # ok | failed | skipped
    brier: float | None = None  # Brier score of the out-of-fold scores
    calibrated_brier: float | None = None  # cross-fitted Brier after calibration, if tried
    fold_models: list = field(default_factory=list, repr=False)  # fitted, one per fold

    @property
    def ok(self) -> bool:
        return self.status == OK

    def row(self) -> dict:
        """One leaderboard row (JSON-safe: missing numbers are None)."""

        def num(value, digits=4):
            return round(float(value), digits) if value is not None and np.isfinite(value) \
                else None

        return {
            "candidate": self.spec.name,
            "family": self.spec.family,
            "cv_cost": num(self.cv_cost),
            "cv_cost_std": num(self.cv_cost_std),
            "pr_auc": num(self.pr_auc),
            "threshold": num(self.threshold, 6),
            "fit_seconds": num(self.fit_seconds, 2),
            "status": self.status,
            "error": self.error or "",
        }


def failed_result(spec: CandidateSpec, n: int, status: str, error: str) -> CVResult:
    """The result of a candidate that failed to fit, or was skipped: it can never win."""
    return CVResult(spec, np.full(n, np.nan), float("nan"), float("inf"), float("nan"),
                    float("inf"), float("nan"), 0.0, error=error, status=status)


def fold_thresholds(y, oof, folds, *, costs: DecisionCosts) -> list[float]:
    """For each fold, the cost-optimal threshold on the out-of-fold scores of the others."""
    held = [held_pos for _, held_pos in folds]
    return [c.threshold for c in choose_thresholds_without(y, oof, held, costs=costs)]


def _fold_costs(y, oof, folds, thresholds, *, costs: DecisionCosts) -> list[float]:
    out = []
    for (_, held_pos), t in zip(folds, thresholds, strict=True):
        out.append(costs.rows(held_pos).normalised(y[held_pos], decide(oof[held_pos], t)))
    return out


def honest_row_costs(y, oof, folds, *, costs: DecisionCosts) -> tuple[np.ndarray, float]:
    """Each row's cost when its fold is decided at the threshold chosen on the other folds,
    and the cost of flagging nothing on these rows (to normalise their sum)."""
    y = np.asarray(y)
    thresholds = fold_thresholds(y, oof, folds, costs=costs)
    miss = costs.miss_costs(y)
    out = np.zeros(len(y))
    for (_, held_pos), t in zip(folds, thresholds, strict=True):
        flagged = decide(oof[held_pos], t)
        out[held_pos] = np.where(flagged, np.where(y[held_pos] == 1, 0.0, costs.false_alarm_cost),
                                 miss[held_pos])
    return out, float(miss.sum())


def honest_fold_costs(y, oof, folds, *, costs: DecisionCosts) -> list[float]:
    """Normalised cost of each held-out fold at the threshold chosen on the other folds.

    The threshold never sees the labels of the rows it is judged on.
    """
    y = np.asarray(y)
    thresholds = fold_thresholds(y, oof, folds, costs=costs)
    return _fold_costs(y, oof, folds, thresholds, costs=costs)


def score_oof(spec: CandidateSpec, y, oof, folds, *, costs: DecisionCosts,
              fit_seconds: float) -> CVResult:
    """Threshold, honest CV cost, PR AUC and Brier score of out-of-fold scores."""
    y = np.asarray(y)
    # one sort for all: the threshold on every row, and each fold's from the other folds
    nothing = np.array([], dtype=np.intp)
    choice, *per_fold = choose_thresholds_without(
        y, oof, [nothing, *(held_pos for _, held_pos in folds)], costs=costs)
    fold_costs = _fold_costs(y, oof, folds, [c.threshold for c in per_fold], costs=costs)
    return CVResult(
        spec=spec,
        oof_scores=oof,
        threshold=choice.threshold,
        cv_cost=float(np.mean(fold_costs)),
        cv_cost_std=float(np.std(fold_costs)),
        oof_cost=choice.normalised_cost,
        pr_auc=float(average_precision_score(y, oof, sample_weight=costs.row_weights(y))),
        fit_seconds=fit_seconds,
        fold_costs=fold_costs,
        brier=float(brier_score_loss(y, np.clip(oof, 0, 1))),
    )


def fit_fold(
    spec: CandidateSpec,
    X: pd.DataFrame,
    y: np.ndarray,
    schema: InputSchema,
    train_pos: np.ndarray,
    held_pos: np.ndarray,
    *,
    seed: int,
    n_jobs: int = 1,
):
    """Fit ``spec`` on one training fold (resampling inside it); score its held-out rows.

    Returns:
        (scores of the held-out rows, the fitted pipeline, seconds taken)
    """
    started = time.perf_counter()
    y_fit = y[train_pos]
    pipe = sequential_prediction(fit_on_rows(
        pipeline_for(spec, schema, y_fit, seed=seed, n_jobs=n_jobs), X, train_pos, y_fit))
    scores = positive_scores(pipe, X.iloc[held_pos])
    trim_heap()  # the fit's temporaries are freed: do not let the next fold start higher
    return scores, pipe, time.perf_counter() - started


def assemble(spec: CandidateSpec, y, folds, fold_outputs, *, costs: DecisionCosts) -> CVResult:
    """A candidate's CV result from its per-fold ``fit_fold`` outputs (in fold order)."""
    oof = np.full(len(y), np.nan)
    for (_, held_pos), (scores, _, _) in zip(folds, fold_outputs, strict=True):
        oof[held_pos] = scores
    if not np.isfinite(oof).all():
        raise ValueError("the folds do not cover every training row exactly once")
    result = score_oof(spec, y, oof, folds, costs=costs,
                       fit_seconds=float(sum(seconds for _, _, seconds in fold_outputs)))
    result.fold_models = [model for _, model, _ in fold_outputs]
    return result


def cross_validate(
    spec: CandidateSpec,
    X: pd.DataFrame,
    y: np.ndarray,
    schema: InputSchema,
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    costs: DecisionCosts,
    seed: int,
    n_jobs: int = 1,
    on_fold=None,
) -> CVResult:
    """Fit ``spec`` on each training fold (resampling inside it), score the held-out fold.

    The threshold is chosen on the out-of-fold scores of all folds. The reported ``cv_cost``
    is honest: each fold is judged at a threshold chosen on the *other* folds' scores.

    Args:
        on_fold: Called as ``on_fold(spec.name, fold)`` after each fold's fit (progress).
    """
    outputs = []
    for k, (train_pos, held_pos) in enumerate(folds):
        outputs.append(fit_fold(spec, X, y, schema, train_pos, held_pos, seed=seed,
                                n_jobs=n_jobs))
        if on_fold is not None:
            on_fold(spec.name, k)
    return assemble(spec, y, folds, outputs, costs=costs)


def require_candidates(specs: list[CandidateSpec]) -> None:
    """Refuse an empty candidate list with the fix."""
    if not specs:
        raise ConfigError("no candidate strategy fits this data and configuration; "
                          "set strategy.model, sampler and class_weight to 'auto'")
