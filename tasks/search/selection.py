"""Strategy selection: candidates scored by stratified CV on the training part only.

How ``auto`` chooses (each step measured on out-of-fold scores, never on the test part):

1. :func:`tasks.search.candidates.candidate_specs` builds the candidates from the imbalance.
2. :func:`tasks.search.cross_validation.cross_validate` fits each candidate on every training fold
(resampling
   inside the fold) and scores the held-out fold, here in this process or (``executor:
   dask``) as Prefect tasks on Dask (:mod:`tasks.search.dask_fits`). Each candidate gets its own
   cost-optimal threshold on its out-of-fold scores; its CV cost is honest: each fold is
   judged at a threshold chosen on the *other* folds.
3. :func:`blend_result` adds two ensembles of core candidates without refitting anything:
   the average of the two best, and the average of all of them.
4. :func:`choose_best` takes the lowest CV cost among core candidates and blends (opt-in,
   ``simpler_within_se``: the simplest of them within that many paired standard errors). A
   resampled or anomaly-detection candidate must win by more than one fold standard
   deviation (and one paired standard error): with few positives a CV cost is noisy and
   the exotic candidates otherwise win by luck.
5. :func:`calibrate_result` fits a sigmoid calibration map on the winner's out-of-fold
   scores when asked, or (``auto``) when it lowers the cross-validated Brier score. The
   map is monotone, so decisions and cost are unchanged; ``score`` becomes a probability.

Every result keeps its fitted fold models (``CVResult.fold_models``): the final model is
their average (``tasks.search.final_fit.fit_final`` with ``fold_models``), the very models whose
out-of-fold scores chose the strategy and the threshold.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import brier_score_loss

from schemas.config import CALIBRATION_MODES, StrategyConfig, TrainingConfig
from schemas.errors import ConfigError
from schemas.inference import InputSchema
from tasks.data.split import cv_folds
from tasks.decision.calibration import apply_platt, fit_platt
from tasks.decision.costs import DecisionCosts
from tasks.decision.served_classifier import decide
from tasks.judge.plots import calibration_markdown, calibration_summary, cost_curve_markdown
from tasks.search.candidates import (
    BLEND,
    EXOTIC_FAMILIES,
    LINEAR_MODELS,
    CandidateSpec,
    candidate_specs,
)
from tasks.search.cross_validation import SKIPPED, CVResult, fit_fold, require_candidates, score_oof
from tasks.search.work_plan import SearchLog, SearchPlan, local_fit_jobs, run_search

logger = logging.getLogger(__name__)
SIMPLER_WITHIN_SE = StrategyConfig.model_fields["simpler_within_se"].default


@dataclass
class Selection:
    """What the strategy search chose, its leaderboard, and where its fits ran."""

    best: CVResult
    board: pd.DataFrame
    executor: dict


def blend_result(members: list[CVResult], y, folds, *, costs: DecisionCosts) -> CVResult:
    """Score the average of the members' out-of-fold probabilities as one more candidate.

    The members' fold models are exactly what a blend would fit on each fold, so the blend
    needs no extra fitting to be cross-validated.
    """
    spec = CandidateSpec(BLEND, members=tuple(m.spec for m in members))
    oof = np.mean([m.oof_scores for m in members], axis=0)
    result = score_oof(spec, y, oof, folds, costs=costs,
                       fit_seconds=float(sum(m.fit_seconds for m in members)))
    # every member has one model per fold, so the plain average of all of them is the
    # average over folds of the blend
    if all(len(m.fold_models) == len(folds) for m in members):
        result.fold_models = [model for m in members for model in m.fold_models]
    return result


def blend_candidates(results: list[CVResult], y, folds, *,
                     costs: DecisionCosts) -> list[CVResult]:
    """The blends worth scoring: the two best core candidates, and all core candidates."""
    core = sorted((r for r in results if r.ok and r.spec.family == "core"),
                  key=lambda r: (r.cv_cost, r.cv_cost_std))
    groups = []
    if len(core) >= 2:
        groups.append(core[:2])
    if len(core) >= 3:
        groups.append(core)
    return [blend_result(g, y, folds, costs=costs) for g in groups]


def _paired_se(a: CVResult, b: CVResult) -> float:
    d = np.asarray(a.fold_costs) - np.asarray(b.fold_costs)
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def complexity(spec: CandidateSpec) -> int:
    """How flexible a strategy is: 0 linear, 1 one model, 2 a blend of two, 3 of more."""
    if spec.model == BLEND:
        return 2 if len(spec.members) <= 2 else 3
    return 0 if spec.model in LINEAR_MODELS else 1


def simplest_within(best: CVResult, plain: list[CVResult], *, se: float) -> CVResult:
    """The one-standard-error rule on paired folds: the simplest candidate whose CV cost is
    within ``se`` paired standard errors of the lowest. On weak-signal data the differences
    between candidates are mostly fold noise, and the flexible ones do not generalise."""
    if se <= 0:
        return best
    simpler = sorted((r for r in plain if complexity(r.spec) < complexity(best.spec)),
                     key=lambda r: (complexity(r.spec), r.cv_cost, r.cv_cost_std))
    for r in simpler:
        margin = se * _paired_se(best, r)
        if r.cv_cost <= best.cv_cost + margin:
            logger.info("%s is within %.4f (%g paired standard errors) of %s's CV cost: the "
                        "simpler one is chosen", r.spec.name, margin, se, best.spec.name)
            return r
    return best


def choose_best(results: list[CVResult], *,
                simpler_within_se: float = SIMPLER_WITHIN_SE) -> CVResult:
    """The lowest CV cost, made robust by two rules.

    Core candidates and blends compete on CV cost; with ``simpler_within_se`` > 0 the simplest
    of them within that many paired standard errors of the lowest wins
    (:func:`simplest_within`; ties: lower spread, then the earlier candidate). A resampled or
    anomaly-detection candidate replaces that winner only if its CV cost is lower by more than
    the winner's fold standard deviation and the paired standard error of the difference.
    """
    ok = [r for r in results if r.ok]
    if not ok:
        raise ConfigError(
            "every candidate strategy failed to fit; fix the data or fix a strategy: "
            + "; ".join(f"{r.spec.name}: {r.error}" for r in results)
        )
    plain = [r for r in ok if r.spec.family not in EXOTIC_FAMILIES]
    if not plain:
        return min(ok, key=lambda r: (r.cv_cost, r.cv_cost_std))
    best = min(plain, key=lambda r: (r.cv_cost, r.cv_cost_std))
    best = simplest_within(best, plain, se=simpler_within_se)
    for r in sorted((r for r in ok if r.spec.family in EXOTIC_FAMILIES),
                    key=lambda r: (r.cv_cost, r.cv_cost_std)):
        margin = max(best.cv_cost_std, _paired_se(best, r))
        if r.cv_cost < best.cv_cost - margin:
            logger.info("%s beats %s by more than %.4f (one fold std): chosen",
                        r.spec.name, best.spec.name, margin)
            return r
    return best


def calibrate_result(best: CVResult, y, folds, *, mode: str, costs: DecisionCosts) -> CVResult:
    """Decide on, and fit, a sigmoid calibration of the winner from its out-of-fold scores.

    ``auto`` calibrates when the cross-fitted calibration (map fitted on the other folds,
    applied to the held-out fold) lowers the Brier score of the out-of-fold scores. The map
    is strictly increasing, so the cut between flagged and unflagged rows stays where it is:
    the threshold moves to the calibrated scale and the decisions do not change.

    Returns:
        ``best`` unchanged, or a copy whose spec carries the calibration map and whose
        scores and threshold are on the calibrated scale.
    """
    if mode not in CALIBRATION_MODES:
        raise ConfigError(f"calibrate must be one of {list(CALIBRATION_MODES)}; got {mode!r}")
    if mode == "never":
        return best
    y = np.asarray(y)
    oof = best.oof_scores
    crossfit = np.empty(len(y))
    try:
        slope, intercept = fit_platt(y, oof)
        for _, held_pos in folds:
            others = np.ones(len(y), dtype=bool)
            others[held_pos] = False
            # the map on all rows is a close start for the map on the other folds
            fold_slope, fold_intercept = fit_platt(y[others], oof[others],
                                                   start=(slope, intercept))
            crossfit[held_pos] = apply_platt(oof[held_pos], max(fold_slope, 1e-6),
                                             fold_intercept)
    except ValueError as exc:
        logger.warning("Calibration skipped: %s", exc)
        return best
    raw_brier = float(brier_score_loss(y, np.clip(oof, 0, 1)))
    cal_brier = float(brier_score_loss(y, crossfit))
    if slope <= 0:
        logger.warning("Calibration skipped: the scores do not rank positives higher "
                       "(slope %.3g)", slope)
        return replace(best, calibrated_brier=cal_brier)
    if mode == "auto" and not cal_brier < raw_brier:
        logger.info("Calibration not applied: CV Brier %.5f raw vs %.5f calibrated",
                    raw_brier, cal_brier)
        return replace(best, calibrated_brier=cal_brier)
    spec = replace(best.spec, calibrate=True, calibration=(slope, intercept))
    scores = apply_platt(oof, slope, intercept)
    out = score_oof(spec, y, scores, folds, costs=costs, fit_seconds=best.fit_seconds)
    out.fold_models = best.fold_models
    if not np.array_equal(decide(scores, out.threshold), decide(oof, best.threshold)):
        # the map saturated (rows that differed now tie at 0 or 1): keep the raw scores
        logger.warning("Calibration skipped: it would merge scores and change decisions")
        return replace(best, calibrated_brier=cal_brier)
    logger.info("Calibrated %s: CV Brier %.5f -> %.5f; threshold %.4f -> %.4f",
                best.spec.name, raw_brier, cal_brier, best.threshold, out.threshold)
    return replace(out, brier=raw_brier, calibrated_brier=cal_brier)

def select_strategy(
    X: pd.DataFrame, y: np.ndarray, schema: InputSchema,
    folds: list[tuple[np.ndarray, np.ndarray]], specs: list[CandidateSpec], *,
    costs: DecisionCosts, seed: int, plan: SearchPlan | None = None, n_jobs: int = 1,
    calibrate: str = "auto", blend: bool = True, time_budget_s: float | None = None,
    progress=None,
) -> tuple[CVResult, list[CVResult], SearchLog]:
    """Race the candidates here, add blends, choose the winner and calibrate it.

    Returns:
        (best, all results, what the search did); results that are not ``ok`` failed or
        were dropped or skipped.
    """
    require_candidates(specs)
    deadline = None if time_budget_s is None else time.time() + time_budget_s
    inner_jobs = max(1, (os.cpu_count() or 1) // max(1, n_jobs))

    def fit_one(spec: CandidateSpec, k: int):
        train_pos, held_pos = folds[k]
        return fit_fold(spec, X, y, schema, train_pos, held_pos, seed=seed, n_jobs=inner_jobs)

    fit_jobs = local_fit_jobs(fit_one, specs, deadline=deadline, progress=progress,
                              n_jobs=n_jobs)
    results, log = run_search(specs, y, folds, fit_jobs=fit_jobs, costs=costs,
                              plan=plan or SearchPlan())
    best, results = finish_selection(results, y, folds, costs=costs, calibrate=calibrate,
                                     blend=blend)
    return best, results, log


def finish_selection(results: list[CVResult], y, folds, *, costs: DecisionCosts,
                     calibrate: str = "auto", blend: bool = True,
                     simpler_within_se: float = SIMPLER_WITHIN_SE,
                     ) -> tuple[CVResult, list[CVResult]]:
    """From the candidates' CV results: add blends, choose the winner, calibrate it."""
    skipped = [r.spec.name for r in results if r.status == SKIPPED]
    if skipped:
        logger.warning("Wall-clock safety stop: %s not finished", skipped)
    if blend:
        results = results + blend_candidates(results, y, folds, costs=costs)
    best = choose_best(results, simpler_within_se=simpler_within_se)
    best = calibrate_result(best, y, folds, mode=calibrate, costs=costs)
    return best, results


def leaderboard(results: list[CVResult], best: CVResult | None = None) -> pd.DataFrame:
    """Candidates sorted by CV cost (failed and skipped last); the winner is marked."""
    rows = []
    for r in results:
        row = r.row()
        if best is not None and r.spec == best.spec.uncalibrated():
            row["status"] = "chosen" + (" (calibrated)" if best.spec.calibrate else "")
        rows.append(row)
    table = pd.DataFrame(rows)
    order = table["cv_cost"].astype(float).fillna(np.inf)
    table = (table.assign(_order=order).sort_values(["_order", "cv_cost_std"], kind="stable")
             .drop(columns="_order").reset_index(drop=True))
    return table.astype(object).where(table.notna(), None)  # JSON-safe: no NaN


def calibration_report(best: CVResult, y) -> str:
    """Markdown: what calibration did for the winner, and its out-of-fold reliability."""
    lines = [f"# Calibration of {best.spec.name}", ""]
    if best.brier is not None:
        lines.append(f"- Out-of-fold Brier score of the raw scores: {best.brier:.5f}")
    if best.calibrated_brier is not None:
        lines.append(f"- Cross-validated Brier score after sigmoid calibration: "
                     f"{best.calibrated_brier:.5f}")
    lines.append("- `score` is " + ("calibrated (sigmoid map fitted on out-of-fold scores)."
                                    if best.spec.calibrate else "not calibrated."))
    lines.append("")
    lines.append(calibration_markdown(calibration_summary(y, best.oof_scores),
                                      title="Reliability of out-of-fold scores"))
    return "\n".join(lines)

def search(X: pd.DataFrame, y: np.ndarray, schema: InputSchema, *, config: TrainingConfig,
           progress=None) -> tuple[CVResult, list[CVResult], dict]:
    """The strategy search of a training run: folds, candidates, the racing plan, fits here or
    on Dask, then blends, the choice and calibration.

    Args:
        progress: A :class:`tasks.search.progress.SearchProgress` (started here with candidates x
            folds; on Dask it moves when the fits are collected).

    Returns:
        (best, all results, what the search did: executor, plan, fits, drops, Dask timings)
    """
    started = time.perf_counter()
    strategy, seed = config.strategy, config.seed
    costs = DecisionCosts.for_training(config).for_rows(X)
    folds = cv_folds(y, n_folds=config.split.n_folds, seed=seed)
    specs = candidate_specs(strategy, positive_rate=float(y.mean()), positives=int(y.sum()),
                            rows=len(y), has_categorical=bool(schema.categorical))
    require_candidates(specs)
    plan = SearchPlan(screen_folds=strategy.screen_folds, finalists=strategy.finalists)
    deadline = time.time() + strategy.time_budget_s
    timings = None
    if progress is not None:  # at most this many fits: the plan is fixed before any fit
        progress.start(plan.most_fits(len(specs), len(folds)))
    if strategy.executor == "dask":  # each candidate x fold fit: a Prefect task on Dask
        from tasks.search.dask_fits import dask_fit_jobs

        with dask_fit_jobs(specs, X, y, schema, folds, strategy=strategy, seed=seed,
                           deadline=deadline) as (fit_jobs, timings):
            results, log = run_search(specs, y, folds, fit_jobs=fit_jobs, costs=costs,
                                      plan=plan)
    else:
        inner_jobs = max(1, (os.cpu_count() or 1) // max(1, strategy.n_jobs))

        def fit_one(spec: CandidateSpec, k: int):
            return fit_fold(spec, X, y, schema, *folds[k], seed=seed, n_jobs=inner_jobs)

        tick = None if progress is None else (lambda spec, k: progress.advance(spec.name, k))
        fit_jobs = local_fit_jobs(fit_one, specs, deadline=deadline, progress=tick,
                                  n_jobs=strategy.n_jobs)
        results, log = run_search(specs, y, folds, fit_jobs=fit_jobs, costs=costs, plan=plan)
    if progress is not None:
        progress.finish()
    best, results = finish_selection(results, y, folds, costs=costs,
                                     calibrate=strategy.calibrate,
                                     simpler_within_se=strategy.simpler_within_se)
    return best, results, {"executor": strategy.executor, "dask": timings,
                           "search": {**log.as_dict(),
                                      "seconds": round(time.perf_counter() - started, 3)}}


def publish_selection(best: CVResult, results: list[CVResult], y, *,
                      costs: DecisionCosts) -> pd.DataFrame:
    """Publish the leaderboard, the calibration report and the cost curve as artifacts."""
    table = leaderboard(results, best)
    create_table_artifact(key="strategy-leaderboard", table=table.to_dict(orient="records"),
                          description=f"Candidates by CV normalised cost; chosen: {best.spec.name}")
    create_markdown_artifact(key="calibration", markdown=calibration_report(best, y),
                             description="Calibration of the chosen strategy (out-of-fold)")
    create_markdown_artifact(
        key="cost-vs-threshold",
        markdown="# Cost vs threshold (out-of-fold, training part)\n\n" + cost_curve_markdown(
            y, best.oof_scores, threshold=best.threshold, costs=costs))
    return table


@task(name="select", cache_policy=NO_CACHE)
def select_task(X: pd.DataFrame, y: np.ndarray, schema: InputSchema, *,
                config: TrainingConfig) -> Selection:
    """Search the strategy (with progress); publish the leaderboard, calibration and cost
    curve."""
    from tasks.search.progress import SearchProgress

    with SearchProgress() as progress:
        best, results, executor = search(X, y, schema, config=config, progress=progress)
    logger.info("Chose %s: CV normalised cost %.4f ± %.4f, threshold %.4f (from out-of-fold "
                "scores)", best.spec.name, best.cv_cost, best.cv_cost_std, best.threshold)
    board = publish_selection(best, results, y,
                              costs=DecisionCosts.for_training(config).for_rows(X))
    return Selection(best=best, board=board, executor=executor)
