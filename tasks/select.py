"""Strategy selection: candidates scored by stratified CV on the training part only.

How ``auto`` chooses (each step measured on out-of-fold scores, never on the test part):

1. :func:`candidate_specs` builds the candidates from the imbalance: unweighted and
   class-weighted logistic regression and boosted trees, a random forest and a
   BalancedRandomForest for every table ("core"), SMOTE(-NC) from moderate imbalance on,
   random undersampling for big tables, and an IsolationForest for severe imbalance.
2. :func:`cross_validate` fits each candidate on every training fold (resampling inside the
   fold) and scores the held-out fold. Each candidate gets its own cost-optimal threshold on
   its out-of-fold scores; its CV cost is honest: each fold is judged at a threshold chosen
   on the *other* folds.
3. :func:`blend_result` adds two ensembles of core candidates without refitting anything:
   the average of the two best, and the average of all of them.
4. :func:`choose_best` takes the lowest CV cost among core candidates and blends. A
   resampled or anomaly-detection candidate must win by more than one fold standard
   deviation (and one paired standard error): with few positives a CV cost is noisy and
   the exotic candidates otherwise win by luck.
5. :func:`calibrate_result` fits a sigmoid calibration map on the winner's out-of-fold
   scores when asked, or (``auto``) when it lowers the cross-validated Brier score. The
   map is monotone, so decisions and cost are unchanged; ``score`` becomes a probability.

Every result keeps its fitted fold models (``CVResult.fold_models``): the final model is
their average (``tasks.models.fit_final`` with ``fold_models``), the very models whose
out-of-fold scores chose the strategy and the threshold.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import average_precision_score, brier_score_loss

from schemas.config import StrategyConfig
from schemas.errors import ConfigError
from schemas.inference import InputSchema
from tasks.load import trim_heap
from tasks.models import (
    BLEND,
    CandidateSpec,
    apply_platt,
    fit_on_rows,
    fit_platt,
    pipeline_for,
    positive_scores,
    spec_from_config,
)
from tasks.plots import calibration_markdown, calibration_summary
from tasks.resample import INTERPOLATING
from tasks.threshold import choose_thresholds_without, expected_cost

logger = logging.getLogger(__name__)

MILD_RATE = 0.10  # positive rate above this: mild imbalance
SEVERE_RATE = 0.01  # at or below this: severe imbalance
MIN_INTERPOLATION_POSITIVES = 12  # fewer positives: no SMOTE-like samplers
BIG_TABLE_ROWS = 20_000  # from here on, random undersampling is a (fast) candidate
EXOTIC_FAMILIES = ("resampled", "anomaly")
CALIBRATION_MODES = ("auto", "never", "always")

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


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


def _failed(spec: CandidateSpec, n: int, status: str, error: str) -> CVResult:
    return CVResult(spec, np.full(n, np.nan), float("nan"), float("inf"), float("nan"),
                    float("inf"), float("nan"), 0.0, error=error, status=status)


def fold_thresholds(y, oof, folds, *, fn_cost: float, fp_cost: float) -> list[float]:
    """For each fold, the cost-optimal threshold on the out-of-fold scores of the others."""
    held = [held_pos for _, held_pos in folds]
    return [c.threshold for c in choose_thresholds_without(y, oof, held, fn_cost=fn_cost,
                                                           fp_cost=fp_cost)]


def _fold_costs(y, oof, folds, thresholds, *, fn_cost: float, fp_cost: float) -> list[float]:
    costs = []
    for (_, held_pos), t in zip(folds, thresholds, strict=True):
        yh = y[held_pos]
        cost = expected_cost(yh, oof[held_pos] >= t, fn_cost=fn_cost, fp_cost=fp_cost)
        costs.append(float(cost / (fn_cost * yh.sum())))
    return costs


def honest_fold_costs(y, oof, folds, *, fn_cost: float, fp_cost: float) -> list[float]:
    """Normalised cost of each held-out fold at the threshold chosen on the other folds.

    The threshold never sees the labels of the rows it is judged on.
    """
    y = np.asarray(y)
    thresholds = fold_thresholds(y, oof, folds, fn_cost=fn_cost, fp_cost=fp_cost)
    return _fold_costs(y, oof, folds, thresholds, fn_cost=fn_cost, fp_cost=fp_cost)


def score_oof(spec: CandidateSpec, y, oof, folds, *, fn_cost: float, fp_cost: float,
              fit_seconds: float) -> CVResult:
    """Threshold, honest CV cost, PR AUC and Brier score of out-of-fold scores."""
    y = np.asarray(y)
    # one sort for all: the threshold on every row, and each fold's from the other folds
    nothing = np.array([], dtype=np.intp)
    choice, *per_fold = choose_thresholds_without(
        y, oof, [nothing, *(held_pos for _, held_pos in folds)], fn_cost=fn_cost,
        fp_cost=fp_cost)
    fold_costs = _fold_costs(y, oof, folds, [c.threshold for c in per_fold], fn_cost=fn_cost,
                             fp_cost=fp_cost)
    return CVResult(
        spec=spec,
        oof_scores=oof,
        threshold=choice.threshold,
        cv_cost=float(np.mean(fold_costs)),
        cv_cost_std=float(np.std(fold_costs)),
        oof_cost=choice.normalised_cost,
        pr_auc=float(average_precision_score(y, oof)),
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
    pipe = fit_on_rows(pipeline_for(spec, schema, y_fit, seed=seed, n_jobs=n_jobs), X,
                       train_pos, y_fit)
    scores = positive_scores(pipe, X.iloc[held_pos])
    trim_heap()  # the fit's temporaries are freed: do not let the next fold start higher
    return scores, pipe, time.perf_counter() - started


def assemble(spec: CandidateSpec, y, folds, fold_outputs, *, fn_cost: float,
             fp_cost: float) -> CVResult:
    """A candidate's CV result from its per-fold ``fit_fold`` outputs (in fold order)."""
    oof = np.full(len(y), np.nan)
    for (_, held_pos), (scores, _, _) in zip(folds, fold_outputs, strict=True):
        oof[held_pos] = scores
    if not np.isfinite(oof).all():
        raise ValueError("the folds do not cover every training row exactly once")
    result = score_oof(spec, y, oof, folds, fn_cost=fn_cost, fp_cost=fp_cost,
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
    fn_cost: float,
    fp_cost: float,
    seed: int,
    n_jobs: int = 1,
) -> CVResult:
    """Fit ``spec`` on each training fold (resampling inside it), score the held-out fold.

    The threshold is chosen on the out-of-fold scores of all folds. The reported ``cv_cost``
    is honest: each fold is judged at a threshold chosen on the *other* folds' scores.
    """
    outputs = [fit_fold(spec, X, y, schema, train_pos, held_pos, seed=seed, n_jobs=n_jobs)
               for train_pos, held_pos in folds]
    return assemble(spec, y, folds, outputs, fn_cost=fn_cost, fp_cost=fp_cost)


def blend_result(members: list[CVResult], y, folds, *, fn_cost: float,
                 fp_cost: float) -> CVResult:
    """Score the average of the members' out-of-fold probabilities as one more candidate.

    The members' fold models are exactly what a blend would fit on each fold, so the blend
    needs no extra fitting to be cross-validated.
    """
    spec = CandidateSpec(BLEND, members=tuple(m.spec for m in members))
    oof = np.mean([m.oof_scores for m in members], axis=0)
    result = score_oof(spec, y, oof, folds, fn_cost=fn_cost, fp_cost=fp_cost,
                       fit_seconds=float(sum(m.fit_seconds for m in members)))
    # every member has one model per fold, so the plain average of all of them is the
    # average over folds of the blend
    if all(len(m.fold_models) == len(folds) for m in members):
        result.fold_models = [model for m in members for model in m.fold_models]
    return result


def blend_candidates(results: list[CVResult], y, folds, *, fn_cost: float,
                     fp_cost: float) -> list[CVResult]:
    """The blends worth scoring: the two best core candidates, and all core candidates."""
    core = sorted((r for r in results if r.ok and r.spec.family == "core"),
                  key=lambda r: (r.cv_cost, r.cv_cost_std))
    groups = []
    if len(core) >= 2:
        groups.append(core[:2])
    if len(core) >= 3:
        groups.append(core)
    return [blend_result(g, y, folds, fn_cost=fn_cost, fp_cost=fp_cost) for g in groups]


def candidate_specs(
    strategy: StrategyConfig, *, positive_rate: float, positives: int, rows: int,
    has_categorical: bool,
) -> list[CandidateSpec]:
    """Candidate strategies for this data, cheapest and most promising first.

    With every choice fixed in the config there is exactly one candidate. With ``auto``
    the set follows the seed guidance (see DESIGN.md) and is then measured, not assumed:

    - every table: logistic regression and gradient boosting, unweighted and ``balanced``,
      a random forest and a BalancedRandomForest (undersampling ensemble) — the cost
      threshold does most of the work, and which family wins depends on the data;
    - moderate imbalance (positive rate <= 10 %): SMOTE (SMOTENC with categories) with
      logistic regression, when there are enough positives to interpolate;
    - big tables (>= 20,000 rows) with moderate imbalance: random undersampling with
      gradient boosting (fast, and often as good);
    - severe imbalance (<= 1 %): an IsolationForest learnt on the negatives, its anomaly
      score used as the classifier score.

    Calibration is not a candidate: :func:`select_strategy` decides it for the winner.
    """
    if not strategy.is_auto:
        return [spec_from_config(strategy.model, strategy.sampler, strategy.class_weight)]
    severe = positive_rate <= SEVERE_RATE
    moderate = positive_rate <= MILD_RATE
    specs = [
        CandidateSpec("logreg", "none", "none"),
        CandidateSpec("logreg", "none", "balanced"),
        CandidateSpec("hgb", "none", "none"),
        CandidateSpec("brf", "none", "none"),
        CandidateSpec("hgb", "none", "balanced"),
        CandidateSpec("rf", "none", "none"),
    ]
    if moderate:
        specs.append(CandidateSpec("logreg", "smote", "none"))
    if moderate and rows >= BIG_TABLE_ROWS:
        specs.append(CandidateSpec("hgb", "random_under", "none"))
    if severe:
        specs.append(CandidateSpec("iforest", "none", "none"))
    # honour whatever the user fixed, and drop what the data cannot support
    out = []
    for s in specs:
        s = CandidateSpec(
            model=s.model if strategy.model == "auto" else strategy.model,
            sampler=s.sampler if strategy.sampler == "auto" else strategy.sampler,
            class_weight=s.class_weight if strategy.class_weight == "auto"
            else spec_from_config("x", "none", strategy.class_weight).class_weight,
        )
        if s.sampler in INTERPOLATING and positives < MIN_INTERPOLATION_POSITIVES:
            continue
        if has_categorical and s.sampler in ("adasyn", "borderline_smote"):
            continue
        if s not in out:
            out.append(s)
    return out[: strategy.max_candidates]


def _paired_se(a: CVResult, b: CVResult) -> float:
    d = np.asarray(a.fold_costs) - np.asarray(b.fold_costs)
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def choose_best(results: list[CVResult]) -> CVResult:
    """The lowest CV cost, with a stability rule for resampled and anomaly candidates.

    Core candidates and blends compete on CV cost alone (ties: lower spread, then the
    earlier, simpler candidate). A resampled or anomaly-detection candidate replaces that
    winner only if its CV cost is lower by more than the winner's fold standard deviation
    and the paired standard error of the difference.
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
    for r in sorted((r for r in ok if r.spec.family in EXOTIC_FAMILIES),
                    key=lambda r: (r.cv_cost, r.cv_cost_std)):
        margin = max(best.cv_cost_std, _paired_se(best, r))
        if r.cv_cost < best.cv_cost - margin:
            logger.info("%s beats %s by more than %.4f (one fold std): chosen",
                        r.spec.name, best.spec.name, margin)
            return r
    return best


def calibrate_result(best: CVResult, y, folds, *, mode: str, fn_cost: float,
                     fp_cost: float) -> CVResult:
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
    out = score_oof(spec, y, scores, folds, fn_cost=fn_cost, fp_cost=fp_cost,
                    fit_seconds=best.fit_seconds)
    out.fold_models = best.fold_models
    if not np.array_equal(scores >= out.threshold, oof >= best.threshold):
        # the map saturated (rows that differed now tie at 0 or 1): keep the raw scores
        logger.warning("Calibration skipped: it would merge scores and change decisions")
        return replace(best, calibrated_brier=cal_brier)
    logger.info("Calibrated %s: CV Brier %.5f -> %.5f; threshold %.4f -> %.4f",
                best.spec.name, raw_brier, cal_brier, best.threshold, out.threshold)
    return replace(out, brier=raw_brier, calibrated_brier=cal_brier)


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
    calibrate: str = "auto",
    blend: bool = True,
) -> tuple[CVResult, list[CVResult]]:
    """Cross-validate candidates within the time budget; the lowest CV cost wins.

    Candidates start in order while the budget lasts (the first one always runs); the
    others are reported as skipped. With ``n_jobs > 1`` independent candidates run in
    parallel processes. Blends of the core candidates are then scored from their
    out-of-fold predictions, :func:`choose_best` picks the winner and
    :func:`calibrate_result` calibrates it (``calibrate``: auto, never or always).

    Returns:
        (best, all results) where results that are not ``ok`` failed or were skipped.
    """
    if not specs:
        raise ConfigError("no candidate strategy fits this data and configuration; "
                          "set strategy.model, sampler and class_weight to 'auto'")
    deadline = time.time() + time_budget_s
    inner_jobs = max(1, (os.cpu_count() or 1) // max(1, n_jobs))

    def run(i, spec):
        if i > 0 and time.time() > deadline:
            return _failed(spec, len(y), SKIPPED, f"time budget of {time_budget_s:g} s spent")
        try:
            r = cross_validate(spec, X, y, schema, folds, fn_cost=fn_cost, fp_cost=fp_cost,
                               seed=seed, n_jobs=inner_jobs)
        except Exception as exc:  # a candidate that cannot fit is reported, not fatal
            logger.warning("Candidate %s failed: %s", spec.name, exc)
            return _failed(spec, len(y), FAILED, f"{type(exc).__name__}: {exc}")
        logger.info("Candidate %-28s CV cost %.4f ± %.4f  PR AUC %.3f  (%.1f s)",
                    r.spec.name, r.cv_cost, r.cv_cost_std, r.pr_auc, r.fit_seconds)
        return r

    if n_jobs > 1 and len(specs) > 1:
        results = Parallel(n_jobs=n_jobs, pre_dispatch="n_jobs")(
            delayed(run)(i, s) for i, s in enumerate(specs))
    else:
        results = [run(i, s) for i, s in enumerate(specs)]
    return finish_selection(results, y, folds, fn_cost=fn_cost, fp_cost=fp_cost,
                            time_budget_s=time_budget_s, calibrate=calibrate, blend=blend)


def finish_selection(results: list[CVResult], y, folds, *, fn_cost: float, fp_cost: float,
                     time_budget_s: float, calibrate: str = "auto",
                     blend: bool = True) -> tuple[CVResult, list[CVResult]]:
    """From the candidates' CV results: add blends, choose the winner, calibrate it."""
    skipped = [r.spec.name for r in results if r.status == SKIPPED]
    if skipped:
        logger.warning("Time budget of %.0f s spent: skipped %s", time_budget_s, skipped)
    if blend:
        results = results + blend_candidates(results, y, folds, fn_cost=fn_cost,
                                             fp_cost=fp_cost)
    best = choose_best(results)
    logger.info("Chose %s: CV cost %.4f ± %.4f", best.spec.name, best.cv_cost, best.cv_cost_std)
    best = calibrate_result(best, y, folds, mode=calibrate, fn_cost=fn_cost, fp_cost=fp_cost)
    return best, results


def leaderboard(results: list[CVResult], best: CVResult | None = None) -> pd.DataFrame:
    """Candidates sorted by CV cost (failed and skipped last); the winner is marked."""
    rows = []
    for r in results:
        row = r.row()
        if best is not None and r.spec == replace(best.spec, calibrate=False,
                                                  calibration=None):
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


def publish_selection(best: CVResult, results: list[CVResult], y) -> pd.DataFrame:
    """Publish the leaderboard and the calibration report as Prefect artifacts."""
    table = leaderboard(results, best)
    create_table_artifact(key="strategy-leaderboard", table=table.to_dict(orient="records"),
                          description=f"Candidates by CV normalised cost; chosen: {best.spec.name}")
    create_markdown_artifact(key="calibration", markdown=calibration_report(best, y),
                             description="Calibration of the chosen strategy (out-of-fold)")
    return table


@task(name="select", cache_policy=NO_CACHE)
def select_task(X, y, schema, folds, specs, *, fn_cost, fp_cost, seed, time_budget_s, n_jobs,
                calibrate="auto"):
    """Run the selection; publish the leaderboard and the calibration report as artifacts."""
    best, results = select_strategy(X, y, schema, folds, specs, fn_cost=fn_cost,
                                    fp_cost=fp_cost, seed=seed, time_budget_s=time_budget_s,
                                    n_jobs=n_jobs, calibrate=calibrate)
    return best, publish_selection(best, results, y)
