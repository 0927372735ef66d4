"""The search's work plan (tasks/search/work_plan.py): racing over candidates x folds, decided by
the data alone; the wall clock only as a recorded safety stop (the same choice on a loaded
machine: tests/flows/test_search_processes.py)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from schemas.inference import infer_input_schema
from tasks.data.split import cv_folds
from tasks.decision.costs import DecisionCosts
from tasks.search.candidates import CandidateSpec
from tasks.search.work_plan import SearchPlan, local_fit_jobs, run_search

COSTS = DecisionCosts(fn_cost=10, fp_cost=1)


@pytest.fixture(scope="module")
def data():
    """600 rows, 10 % positives, a strong linear signal."""
    X, y = make_classification(n_samples=600, n_features=6, n_informative=4, n_redundant=0,
                               weights=[0.9], class_sep=1.5, random_state=1)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    schema = infer_input_schema(df.assign(y=y), label="y", positive="1", negative="0")
    return df, y, schema, cv_folds(y, n_folds=5, seed=0)


def fake_jobs(scores_by_spec, folds, calls):
    """A fit_jobs that 'fits' by handing out fixed out-of-fold scores, and records each job."""

    def run(jobs):
        out = {}
        for i, k in jobs:
            calls.append((i, k))
            spec_scores = scores_by_spec[i]
            out[(i, k)] = (spec_scores[folds[k][1]], f"model {i}/{k}", 0.0)
        return out

    return run


def test_clearly_worse_candidates_stop_after_screening(data):
    """Check that a candidate with random scores is dropped after the screened folds (never
    fitted on the others), while a good one is finished on every fold."""
    _, y, _, folds = data
    rng = np.random.default_rng(0)
    good = np.clip(0.8 * y + rng.normal(0, 0.2, len(y)), 0, 1)
    noise = rng.uniform(size=len(y))
    specs = [CandidateSpec("logreg"), CandidateSpec("rf")]
    calls = []
    results, log = run_search(specs, y, folds, fit_jobs=fake_jobs([good, noise], folds, calls),
                              costs=COSTS, plan=SearchPlan(screen_folds=2, finalists=4))
    assert [r.status for r in results] == ["ok", "dropped"]
    assert sorted(k for i, k in calls if i == 1) == [0, 1]
    assert sorted(k for i, k in calls if i == 0) == [0, 1, 2, 3, 4]
    assert log.fits == 7 and "rf|none|none" in log.dropped
    assert log.screened["logreg|none|none"] < log.screened["rf|none|none"]


def test_finalists_cap_keeps_the_best_screened(data):
    """Check that with more equally good candidates than finalists, the best screened go on."""
    _, y, _, folds = data
    rng = np.random.default_rng(1)
    base = 0.8 * y + rng.normal(0, 0.25, len(y))
    scores = [np.clip(base + rng.normal(0, 0.01, len(y)), 0, 1) for _ in range(4)]
    specs = [CandidateSpec("logreg"), CandidateSpec("hgb"), CandidateSpec("rf"),
             CandidateSpec("brf")]
    results, log = run_search(specs, y, folds, fit_jobs=fake_jobs(scores, folds, []),
                              costs=COSTS, plan=SearchPlan(screen_folds=2, finalists=2))
    assert sum(r.status == "ok" for r in results) == 2
    assert sum(r.status == "dropped" for r in results) == 2
    kept = [r.spec.name for r in results if r.ok]
    ranked = sorted(log.screened, key=log.screened.get)
    assert kept == sorted(ranked[:2], key=[s.name for s in specs].index)


def test_one_candidate_is_fitted_on_every_fold_without_racing(data):
    """Check that a fixed strategy (one candidate) is simply cross-validated."""
    _, y, _, folds = data
    calls = []
    results, log = run_search([CandidateSpec("logreg")], y, folds,
                              fit_jobs=fake_jobs([y * 0.9], folds, calls), costs=COSTS,
                              plan=SearchPlan())
    assert results[0].ok and sorted(calls) == [(0, k) for k in range(5)]
    assert log.dropped == {}


def test_default_plan_fits_every_candidate_on_every_fold(data):
    """Check that without screen_folds (the default) there is no racing: every candidate is
    fitted on every fold and none is dropped, whatever the screening would have said."""
    _, y, _, folds = data
    calls = []
    rng = np.random.default_rng(1)
    results, log = run_search([CandidateSpec("logreg"), CandidateSpec("rf")], y, folds,
                              fit_jobs=fake_jobs([y * 0.9, rng.random(len(y))], folds, calls),
                              costs=COSTS, plan=SearchPlan())
    assert [r.status for r in results] == ["ok", "ok"]
    assert sorted(calls) == [(i, k) for i in range(2) for k in range(5)]
    assert log.dropped == {} and log.fits == 10
    assert SearchPlan().most_fits(2, 5) == 10 and SearchPlan(screen_folds=2).most_fits(6, 5) == 24


def test_safety_stop_is_recorded(data):
    """Check that fits not started before the wall-clock stop are skipped and the log says
    the search was stopped early (so the metadata and model card can say so)."""
    df, y, schema, folds = data
    specs = [CandidateSpec("logreg"), CandidateSpec("hgb")]
    calls = []

    def fit_one(spec, k):
        calls.append((spec.name, k))
        time.sleep(0.2)
        return y[folds[k][1]] * 0.5 + 0.25, "m", 0.2

    fit_jobs = local_fit_jobs(fit_one, specs, deadline=time.time() + 0.5)
    results, log = run_search(specs, y, folds, fit_jobs=fit_jobs, costs=COSTS,
                              plan=SearchPlan(screen_folds=2))
    assert log.stopped_early
    assert any(r.status == "skipped" for r in results)
    assert len(calls) < 2 * 5
