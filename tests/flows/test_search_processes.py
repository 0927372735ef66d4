"""The strategy search across processes (beside test_dask.py's Dask workers): candidates in
parallel worker processes give the sequential results, and CPU-bound neighbour processes do not
change the choice. Moved from tests/unit: each starts processes (loky workers importing
scikit-learn, or CPU burners), about 12 s of CPU between them."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from schemas.inference import infer_input_schema
from tasks.data.split import cv_folds
from tasks.decision.threshold import DecisionCosts
from tasks.search.candidates import CandidateSpec
from tasks.search.selection import select_strategy
from tasks.search.work_plan import SearchPlan

pytestmark = pytest.mark.slow

COSTS = {"costs": DecisionCosts(fn_cost=10.0, fp_cost=1.0)}


@pytest.fixture(scope="module")
def mixed_data():
    """400 rows, about 10 % positives, three numeric columns and one categorical."""
    X, y = make_classification(n_samples=400, n_features=5, n_informative=3, n_redundant=0,
                               weights=[0.9], class_sep=1.2, random_state=0)
    df = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    df["kind"] = np.where(X[:, 3] > 0, "x", "y")
    schema = infer_input_schema(df.assign(label=y), label="label", positive="1", negative="0")
    return df, y, schema, cv_folds(y, n_folds=4, seed=0)


@pytest.fixture(scope="module")
def linear_data():
    """600 rows, 10 % positives, a strong linear signal."""
    X, y = make_classification(n_samples=600, n_features=6, n_informative=4, n_redundant=0,
                               weights=[0.9], class_sep=1.5, random_state=1)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    schema = infer_input_schema(df.assign(y=y), label="y", positive="1", negative="0")
    return df, y, schema, cv_folds(y, n_folds=5, seed=0)


def test_parallel_candidates_match_sequential(mixed_data):
    """Check that running candidates in parallel processes gives the sequential results."""
    df, y, schema, folds = mixed_data
    specs = [CandidateSpec("logreg"), CandidateSpec("logreg", class_weight="balanced"),
             CandidateSpec("hgb")]
    kw = {"seed": 0, **COSTS}
    best1, res1, _ = select_strategy(df, y, schema, folds, specs, n_jobs=1, **kw)
    best2, res2, _ = select_strategy(df, y, schema, folds, specs, n_jobs=2, **kw)
    assert [r.spec for r in res1] == [r.spec for r in res2]
    np.testing.assert_allclose([r.cv_cost for r in res1], [r.cv_cost for r in res2])
    assert best1.spec == best2.spec


def _burn(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


def test_loaded_machine_chooses_the_same_strategy(linear_data):
    """Check that the same data, config and seed give the same choice, the same leaderboard
    and the same fits while CPU-bound neighbour processes compete for every core."""
    df, y, schema, folds = linear_data
    specs = [CandidateSpec("logreg"), CandidateSpec("hgb"), CandidateSpec("rf"),
             CandidateSpec("logreg", "none", "balanced")]
    kw = {"seed": 0, "costs": COSTS["costs"], "plan": SearchPlan(screen_folds=2, finalists=2)}
    quiet_best, quiet, quiet_log = select_strategy(df, y, schema, folds, specs, **kw)
    neighbours = [multiprocessing.Process(target=_burn, args=(600,), daemon=True)
                  for _ in range(max(2, multiprocessing.cpu_count()))]
    for p in neighbours:
        p.start()
    try:
        busy_best, busy, busy_log = select_strategy(df, y, schema, folds, specs, **kw)
    finally:
        for p in neighbours:
            p.terminate()
    # the same choice and work; numbers equal up to the last bits of multi-threaded sums
    # (OpenMP reductions in the tree fits may add in another order on a loaded machine)
    assert busy_best.spec.name == quiet_best.spec.name
    assert np.allclose(busy_best.spec.calibration or (0, 0),
                       quiet_best.spec.calibration or (0, 0), rtol=1e-9, atol=0)
    assert np.isclose(busy_best.threshold, quiet_best.threshold, rtol=1e-9, atol=0)
    assert [(r.spec.name, r.status) for r in busy] == [(r.spec.name, r.status) for r in quiet]
    assert np.allclose([r.cv_cost for r in busy], [r.cv_cost for r in quiet], rtol=1e-9,
                       atol=0, equal_nan=True)
    assert busy_log.fits == quiet_log.fits and busy_log.dropped == quiet_log.dropped
