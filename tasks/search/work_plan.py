"""The strategy search's work plan, decided by the data alone, never by the clock: by default
every candidate on every fold; with racing (``screen_folds`` set) every candidate on a few
folds, then the ones that can still win on the rest.

1. **Screen.** Every candidate is fitted on the first ``screen_folds`` folds, cheapest first.
   Its screening cost is honest: each screened fold is judged at the threshold chosen on the
   other screened folds.
2. **Drop.** A candidate goes no further when it is worse than the screening leader with
   ``drop_confidence`` (a one-sided paired test on the screened rows' costs: both candidates
   decided every row at their own honest thresholds), and at most ``finalists`` candidates
   (the best screened) go on.
3. **Finish.** The finalists are fitted on the remaining folds: full out-of-fold scores.

The plan is fixed before any fit starts, so the same data, config and seed give the same
fits and the same choice on any machine, loaded or not. A wall-clock limit is only a safety
stop: fits not started when it passes are skipped, and the search's ``stopped_early`` says so
(the metadata, the model card and the run's log carry it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from tasks.decision.costs import DecisionCosts, normalised
from tasks.search.candidates import CandidateSpec
from tasks.search.cross_validation import (
    DROPPED,
    FAILED,
    SKIPPED,
    CVResult,
    assemble,
    failed_result,
    honest_row_costs,
)

logger = logging.getLogger(__name__)

Job = tuple[int, int]  # (candidate index, fold index)
# (held-out scores, fitted model, seconds), as tasks.search.cross_validation.fit_fold gives
FoldOutput = tuple


@dataclass(frozen=True)
class SearchPlan:
    """How much work the search does, decided before it starts."""

    screen_folds: int | None = None  # None: no racing, every candidate on every fold
    finalists: int = 4
    drop_confidence: float = 0.95

    def most_fits(self, candidates: int, folds: int) -> int:
        """The fits the search makes at most: every candidate screened, finalists finished."""
        if self.screen_folds is None or candidates <= 1 or folds <= self.screen_folds:
            return candidates * folds
        return (candidates * self.screen_folds
                + min(self.finalists, candidates) * (folds - self.screen_folds))


@dataclass
class SearchLog:
    """What the search did: screening costs, who was dropped and why, how many fits."""

    plan: dict
    fits: int = 0
    screened: dict = field(default_factory=dict)  # candidate -> screening cost
    dropped: dict = field(default_factory=dict)  # candidate -> reason
    stopped_early: str | None = None

    def as_dict(self) -> dict:
        return {"plan": self.plan, "fits": self.fits, "screened": self.screened,
                "dropped": self.dropped, "stopped_early": self.stopped_early}


def screening_costs(outputs: dict[Job, FoldOutput], specs, y, folds, screen: list[int], *,
                    costs: DecisionCosts) -> dict[int, tuple[np.ndarray, float]]:
    """Honest per-row costs on the screened rows, per candidate with every screened fold."""
    rows = np.concatenate([folds[k][1] for k in screen])
    local = []  # the screened folds, in positions of ``rows``
    start = 0
    for k in screen:
        n = len(folds[k][1])
        local.append((None, np.arange(start, start + n)))
        start += n
    y_rows, c_rows = np.asarray(y)[rows], costs.rows(rows)
    out = {}
    for i in range(len(specs)):
        if not all(isinstance(outputs.get((i, k)), tuple) for k in screen):
            continue
        oof = np.concatenate([outputs[(i, k)][0] for k in screen])
        per_row, never = honest_row_costs(y_rows, oof, local, costs=c_rows)
        out[i] = (per_row, never)
    return out


def drop_losers(specs, scored: dict[int, tuple[np.ndarray, float]], plan: SearchPlan,
                log: SearchLog) -> list[int]:
    """The candidates that may still win: not clearly worse than the leader, best first."""
    totals = {i: normalised(per_row.sum(), never) for i, (per_row, never) in scored.items()}
    for i, value in totals.items():
        log.screened[specs[i].name] = round(value, 6)
    if not totals:
        return []
    leader = min(totals, key=lambda i: (totals[i], i))
    z = norm.ppf(plan.drop_confidence)
    keep = []
    for i in sorted(totals, key=lambda i: (totals[i], i)):
        d = scored[i][0] - scored[leader][0]  # paired, per row
        se = float(np.sqrt(len(d)) * d.std(ddof=1)) if len(d) > 1 else 0.0
        if i != leader and d.sum() - z * se > 0:
            log.dropped[specs[i].name] = (f"worse than {specs[leader].name} on the screened folds "
                                          f"({totals[i]:.4f} vs {totals[leader]:.4f}) with "
                                          f"{plan.drop_confidence:.0%} confidence")
        elif len(keep) >= plan.finalists:
            log.dropped[specs[i].name] = (f"not among the {plan.finalists} best screened "
                                          f"({totals[i]:.4f})")
        else:
            keep.append(i)
    return keep


def run_search(specs: list[CandidateSpec], y, folds, *,
               fit_jobs: Callable[[list[Job]], dict[Job, FoldOutput | Exception]],
               costs: DecisionCosts, plan: SearchPlan) -> tuple[list[CVResult], SearchLog]:
    """Screen, drop, finish: one CV result per candidate (finalists ``ok``; the others
    ``dropped``, ``failed`` or ``skipped``) and the log of the work done.

    ``fit_jobs`` runs (candidate, fold) fits and returns each one's ``fit_fold`` output, or
    the exception it raised; a job it did not run (a safety stop) is absent.
    """
    log = SearchLog(plan={"screen_folds": plan.screen_folds, "finalists": plan.finalists,
                          "drop_confidence": plan.drop_confidence, "folds": len(folds),
                          "candidates": len(specs)})
    k_all = list(range(len(folds)))
    racing = (plan.screen_folds is not None and len(specs) > 1
              and len(folds) > plan.screen_folds)
    screen = k_all[:plan.screen_folds] if racing else k_all
    outputs = fit_jobs([(i, k) for i in range(len(specs)) for k in screen])
    survivors = list(range(len(specs)))
    if racing:
        scored = screening_costs(outputs, specs, y, folds, screen, costs=costs)
        survivors = drop_losers(specs, scored, plan, log)
        rest = [(i, k) for i in survivors for k in k_all[plan.screen_folds:]]
        outputs.update(fit_jobs(rest))
    log.fits = sum(isinstance(o, tuple) for o in outputs.values())
    results = [_result(i, spec, outputs, y, folds, costs=costs, survivor=i in survivors,
                       log=log) for i, spec in enumerate(specs)]
    return results, log


def _result(i: int, spec: CandidateSpec, outputs, y, folds, *, costs: DecisionCosts,
            survivor: bool, log: SearchLog) -> CVResult:
    mine = [outputs.get((i, k)) for k in range(len(folds))]
    error = next((o for o in mine if isinstance(o, Exception)), None)
    if error is not None:
        logger.warning("Candidate %s failed: %s", spec.name, error)
        return failed_result(spec, len(y), FAILED, f"{type(error).__name__}: {error}")
    if spec.name in log.dropped:
        return failed_result(spec, len(y), DROPPED, log.dropped[spec.name])
    if not survivor or any(o is None for o in mine):
        log.stopped_early = log.stopped_early or "the wall-clock safety stop"
        return failed_result(spec, len(y), SKIPPED, "not finished before the wall-clock "
                                                    "safety stop")
    result = assemble(spec, y, folds, mine, costs=costs)
    logger.info("Candidate %-28s CV cost %.4f ± %.4f  PR AUC %.3f  (%.1f s)", spec.name,
                result.cv_cost, result.cv_cost_std, result.pr_auc, result.fit_seconds)
    return result


def local_fit_jobs(fit_one: Callable[[CandidateSpec, int], FoldOutput], specs, *,
                   deadline: float | None = None, progress=None, n_jobs: int = 1):
    """A ``fit_jobs`` that runs the jobs here, in order, until the wall-clock ``deadline``.

    With ``n_jobs > 1`` the candidates of a batch run in parallel processes (each one's
    folds in order); the results do not depend on it.
    """

    def run_candidate(i: int, ks: list[int]) -> dict[Job, FoldOutput | Exception]:
        out: dict[Job, FoldOutput | Exception] = {}
        for k in ks:
            if deadline is not None and time.time() > deadline:
                break
            try:
                out[(i, k)] = fit_one(specs[i], k)
            except Exception as exc:  # a candidate that cannot fit is reported, not fatal
                out[(i, k)] = exc
                break  # one failed fold fails the candidate: skip its other folds
            if progress is not None:
                progress(specs[i], k)
        return out

    def run(jobs: list[Job]) -> dict[Job, FoldOutput | Exception]:
        by_candidate: dict[int, list[int]] = {}
        for i, k in jobs:
            by_candidate.setdefault(i, []).append(k)
        if n_jobs > 1 and len(by_candidate) > 1:
            from joblib import Parallel, delayed

            parts = Parallel(n_jobs=n_jobs, pre_dispatch="n_jobs")(
                delayed(run_candidate)(i, ks) for i, ks in by_candidate.items())
        else:
            parts = [run_candidate(i, ks) for i, ks in by_candidate.items()]
        out = {job: o for part in parts for job, o in part.items()}
        if len(out) < len(jobs) and deadline is not None and time.time() > deadline:
            logger.warning("Wall-clock safety stop reached: %d fits not started",
                           len(jobs) - len(out))
        return out

    return run
