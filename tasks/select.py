"""Strategy selection: candidates scored by stratified CV on the training part only."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import average_precision_score

from schemas.config import StrategyConfig
from schemas.errors import ConfigError
from schemas.inference import InputSchema
from tasks.models import CandidateSpec, make_pipeline, positive_scores, spec_from_config
from tasks.resample import INTERPOLATING
from tasks.threshold import choose_threshold, expected_cost

logger = logging.getLogger(__name__)


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

    def row(self) -> dict:
        return {
            "candidate": self.spec.name,
            "cv_cost": round(self.cv_cost, 4),
            "cv_cost_std": round(self.cv_cost_std, 4),
            "pr_auc": round(self.pr_auc, 4),
            "threshold": round(self.threshold, 4),
            "fit_seconds": round(self.fit_seconds, 2),
            "error": self.error or "",
        }


def cross_validate(
    spec: CandidateSpec,
    X: pd.DataFrame,
    y: np.ndarray,
    schema: InputSchema,
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    fn_cost: float,
    fp_cost: float,
    seed: int,
    n_jobs: int = 1,
) -> CVResult:
    """Fit ``spec`` on each training fold (resampling inside it), score the held-out fold.

    The threshold is chosen on the out-of-fold scores of all folds. The reported ``cv_cost``
    is honest: each fold is judged at a threshold chosen on the *other* folds' scores.
    """
    started = time.perf_counter()
    oof = np.full(len(y), np.nan)
    for train_pos, held_pos in folds:
        y_fit = y[train_pos]
        pipe = make_pipeline(
            spec,
            schema,
            min_class_rows=int(min(y_fit.sum(), len(y_fit) - y_fit.sum())),
            minority_share=float(y_fit.mean()),
            seed=seed,
            n_jobs=n_jobs,
        )
        pipe.fit(X.iloc[train_pos], y_fit)
        oof[held_pos] = positive_scores(pipe, X.iloc[held_pos])
    seconds = time.perf_counter() - started
    choice = choose_threshold(y, oof, fn_cost=fn_cost, fp_cost=fp_cost)
    fold_costs = []
    for _, held_pos in folds:
        others = np.setdiff1d(np.arange(len(y)), held_pos, assume_unique=True)
        t = choose_threshold(y[others], oof[others], fn_cost=fn_cost, fp_cost=fp_cost).threshold
        yh = y[held_pos]
        cost = expected_cost(yh, oof[held_pos] >= t, fn_cost=fn_cost, fp_cost=fp_cost)
        fold_costs.append(cost / (fn_cost * yh.sum()))
    return CVResult(
        spec=spec,
        oof_scores=oof,
        threshold=choice.threshold,
        cv_cost=float(np.mean(fold_costs)),
        cv_cost_std=float(np.std(fold_costs)),
        oof_cost=choice.normalised_cost,
        pr_auc=float(average_precision_score(y, oof)),
        fit_seconds=seconds,
        fold_costs=[float(c) for c in fold_costs],
    )


def candidate_specs(
    strategy: StrategyConfig, *, positive_rate: float, positives: int, rows: int,
    has_categorical: bool,
) -> list[CandidateSpec]:
    """Candidate strategies for this data, most promising first.

    With every choice fixed in the config there is exactly one candidate. With ``auto``
    the set follows the seed guidance (see DESIGN.md) and is then measured, not assumed:
    unweighted and weighted linear and boosted models (the cost threshold does most of the
    work), undersampling ensembles, SMOTE(-NC) for moderate and severe imbalance, and an
    anomaly detector when positives are very rare.
    """
    if not strategy.is_auto:
        return [spec_from_config(strategy.model, strategy.sampler, strategy.class_weight,
                                 strategy.calibrate == "always")]
    severe = positive_rate <= 0.01
    moderate = positive_rate <= 0.1
    specs = [
        CandidateSpec("hgb", "none", "none"),
        CandidateSpec("logreg", "none", "none"),
        CandidateSpec("logreg", "none", "balanced"),
        CandidateSpec("hgb", "none", "balanced"),
        CandidateSpec("brf", "none", "none"),
        CandidateSpec("rf", "none", "none"),
    ]
    if moderate:
        specs.append(CandidateSpec("logreg", "smote", "none"))
    if moderate and rows >= 20_000:
        specs.append(CandidateSpec("hgb", "random_under", "none"))
    if severe:
        specs.append(CandidateSpec("iforest", "none", "none"))
    if not moderate:
        specs.append(CandidateSpec("rf", "none", "balanced"))
    # honour whatever the user fixed, and drop what the data cannot support
    out = []
    for s in specs:
        s = CandidateSpec(
            model=s.model if strategy.model == "auto" else strategy.model,
            sampler=s.sampler if strategy.sampler == "auto" else strategy.sampler,
            class_weight=s.class_weight if strategy.class_weight == "auto"
            else spec_from_config("x", "none", strategy.class_weight).class_weight,
            calibrate=strategy.calibrate == "always",
        )
        if s.sampler in INTERPOLATING and positives < 12:
            continue
        if has_categorical and s.sampler in ("adasyn", "borderline_smote"):
            continue
        if s not in out:
            out.append(s)
    return out[: strategy.max_candidates]


def select_strategy(
    X: pd.DataFrame,
    y: np.ndarray,
    schema: InputSchema,
    folds: list[tuple[np.ndarray, np.ndarray]],
    specs: list[CandidateSpec],
    *,
    fn_cost: float,
    fp_cost: float,
    seed: int,
    time_budget_s: float,
    n_jobs: int = 1,
) -> tuple[CVResult, list[CVResult]]:
    """Cross-validate candidates within the time budget; the lowest CV cost wins.

    Candidates run in order; once the budget is spent the rest are skipped (the first one
    always runs). With ``n_jobs > 1`` independent candidates run in parallel processes.

    Returns:
        (best, all results) where results with an ``error`` failed to fit.
    """
    if not specs:
        raise ConfigError("no candidate strategy fits this data and configuration")
    started = time.perf_counter()
    results: list[CVResult] = []

    def run(spec):
        try:
            return cross_validate(spec, X, y, schema, folds, fn_cost=fn_cost, fp_cost=fp_cost,
                                  seed=seed, n_jobs=1 if n_jobs > 1 else 2)
        except ConfigError:
            raise
        except Exception as exc:  # a candidate that cannot fit is reported, not fatal
            logger.warning("Candidate %s failed: %s", spec.name, exc)
            return CVResult(spec, np.full(len(y), np.nan), float("nan"), float("inf"), 0.0,
                            float("inf"), float("nan"), 0.0, error=f"{type(exc).__name__}: {exc}")

    batch = max(1, n_jobs)
    for i in range(0, len(specs), batch):
        if results and time.perf_counter() - started > time_budget_s:
            logger.warning("Time budget of %.0f s spent: skipped %d candidates",
                           time_budget_s, len(specs) - i)
            break
        chunk = specs[i : i + batch]
        if batch == 1:
            results += [run(chunk[0])]
        else:
            results += Parallel(n_jobs=batch)(delayed(run)(s) for s in chunk)
        for r in results[-len(chunk):]:
            logger.info("Candidate %-32s CV cost %.4f ± %.4f  PR AUC %.3f  (%.1f s)",
                        r.spec.name, r.cv_cost, r.cv_cost_std, r.pr_auc, r.fit_seconds)
    ok = [r for r in results if r.error is None]
    if not ok:
        raise ConfigError(
            "every candidate strategy failed to fit: "
            + "; ".join(f"{r.spec.name}: {r.error}" for r in results)
        )
    best = min(ok, key=lambda r: (r.cv_cost, r.cv_cost_std))
    return best, results


def leaderboard(results: list[CVResult]) -> pd.DataFrame:
    """Candidates sorted by CV cost."""
    table = pd.DataFrame([r.row() for r in results])
    return table.sort_values(["cv_cost", "cv_cost_std"], kind="stable").reset_index(drop=True)


@task(name="select", cache_policy=NO_CACHE)
def select_task(X, y, schema, folds, specs, *, fn_cost, fp_cost, seed, time_budget_s, n_jobs):
    """Run the selection and publish the leaderboard as a table artifact."""
    best, results = select_strategy(X, y, schema, folds, specs, fn_cost=fn_cost,
                                    fp_cost=fp_cost, seed=seed, time_budget_s=time_budget_s,
                                    n_jobs=n_jobs)
    table = leaderboard(results)
    create_table_artifact(key="strategy-leaderboard", table=table.to_dict(orient="records"),
                          description=f"Candidates by CV normalised cost; chosen: {best.spec.name}")
    return best, table
