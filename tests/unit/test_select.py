"""Unit tests for the strategy search (tasks/search/candidates.py, cross_validation.py,
selection.py): candidates, CV, blends, the stability rule, calibration (candidates in parallel
processes: tests/flows/test_search_processes.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from schemas.config import StrategyConfig
from schemas.errors import ConfigError
from schemas.inference import infer_input_schema
from tasks.data.split import cv_folds
from tasks.decision.costs import DecisionCosts
from tasks.search.candidates import CandidateSpec, candidate_specs
from tasks.search.cross_validation import (
    CVResult,
    cross_validate,
    fold_thresholds,
    honest_fold_costs,
)
from tasks.search.selection import (
    blend_candidates,
    calibrate_result,
    calibration_report,
    choose_best,
    leaderboard,
    select_strategy,
)

COSTS = {"costs": DecisionCosts(fn_cost=10.0, fp_cost=1.0)}


@pytest.fixture(scope="module")
def data():
    """400 rows, about 10 % positives, two numeric columns and one categorical."""
    X, y = make_classification(n_samples=400, n_features=5, n_informative=3, n_redundant=0,
                               weights=[0.9], class_sep=1.2, random_state=0)
    df = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    df["kind"] = np.where(X[:, 3] > 0, "x", "y")
    schema = infer_input_schema(df.assign(label=y), label="label", positive="1", negative="0")
    return df, y, schema, cv_folds(y, n_folds=4, seed=0)


def _specs(rate, positives=200, rows=5000, categorical=False, **strategy):
    return candidate_specs(StrategyConfig(**strategy), positive_rate=rate, positives=positives,
                           rows=rows, has_categorical=categorical)


def _result(name, fold_costs, family_spec=None):
    spec = family_spec or CandidateSpec(name)
    costs = np.asarray(fold_costs, dtype=float)
    return CVResult(spec, np.zeros(3), 0.5, float(costs.mean()), float(costs.std()), 0.0,
                    0.5, 1.0, fold_costs=list(costs))


# ---------------------------------------------------------------- candidate set


@pytest.mark.parametrize(
    "rate, positives, rows, present, absent",
    [
        (0.25, 2000, 8000, {"logreg|none|balanced", "rf|none|none"},
         {"logreg|smote|none", "iforest|none|none", "hgb|random_under|none", "brf|none|none"}),
        (0.05, 400, 8000, {"logreg|smote|none", "hgb|none|balanced"},
         {"iforest|none|none", "hgb|random_under|none", "brf|none|none"}),
        (0.05, 4000, 80_000, {"logreg|smote|none", "hgb|random_under|none"},
         {"iforest|none|none", "brf|none|none"}),
        (0.011, 55, 5000, {"logreg|smote|none"}, {"iforest|none|none", "brf|none|none"}),
        (0.01, 50, 5000, {"logreg|smote|none", "brf|none|none"}, {"iforest|none|none"}),
        (0.005, 8, 1600, {"brf|none|none"}, {"logreg|smote|none", "iforest|none|none"}),
    ],
)
def test_candidate_set_follows_imbalance_severity(rate, positives, rows, present, absent):
    """Check that imbalance adds resamplers (the BalancedRandomForest only at 1 % positives or
    fewer), few positives drop SMOTE, and the IsolationForest (measured worst on every shared
    dataset) is never an auto candidate."""
    names = {s.name for s in _specs(rate, positives, rows)}
    assert present <= names
    assert not absent & names
    assert {"logreg|none|none", "hgb|none|none"} <= names


def test_fixed_strategy_gives_one_candidate():
    """Check that a fully fixed strategy is the only candidate."""
    specs = _specs(0.01, model="hgb", sampler="smote", class_weight={0: 1, 1: 20})
    assert [s.name for s in specs] == ["hgb|smote|{0:1,1:20}"]


def test_partly_fixed_strategy_is_honoured_and_deduplicated():
    """Check that fixing the model keeps only that model, with distinct sampler/weights."""
    specs = _specs(0.05, model="logreg")
    assert {s.model for s in specs} == {"logreg"}
    assert len({s.name for s in specs}) == len(specs)


def test_categorical_data_never_gets_numeric_only_samplers():
    """Check that auto drops ADASYN/BorderlineSMOTE candidates when there are categories."""
    assert _specs(0.05, categorical=True, sampler="adasyn") == []
    assert _specs(0.05, categorical=False, sampler="adasyn") != []


# ---------------------------------------------------------------- cross-validation


def test_cross_validate_scores_every_training_row_once(data):
    """Check that resampling inside the folds leaves one out-of-fold score per row."""
    df, y, schema, folds = data
    r = cross_validate(CandidateSpec("logreg", "smote"), df, y, schema, folds, seed=0, **COSTS)
    assert r.oof_scores.shape == (len(y),)
    assert np.isfinite(r.oof_scores).all()
    assert len(r.fold_costs) == len(folds)
    assert r.cv_cost == pytest.approx(np.mean(r.fold_costs))


def test_fold_models_never_saw_their_held_out_rows(data):
    """Check that each kept fold model produced its fold's out-of-fold scores (so never saw it)."""
    df, y, schema, folds = data
    r = cross_validate(CandidateSpec("logreg", "random_over"), df, y, schema, folds, seed=0,
                       **COSTS)
    assert len(r.fold_models) == len(folds)
    for model, (_, held_pos) in zip(r.fold_models, folds, strict=True):
        np.testing.assert_allclose(model.predict_proba(df.iloc[held_pos])[:, 1],
                                   r.oof_scores[held_pos])
        assert model.predict_proba(df.iloc[held_pos]).shape[0] == len(held_pos)


def test_fold_threshold_ignores_the_held_out_labels(data):
    """Check that a fold's threshold does not change when that fold's labels change."""
    _, y, _, folds = data
    scores = np.random.default_rng(0).uniform(size=len(y)) + 0.3 * y
    before = fold_thresholds(y, scores, folds, **COSTS)
    flipped = y.copy()
    held = folds[0][1]
    flipped[held] = 1 - flipped[held]
    after = fold_thresholds(flipped, scores, folds, **COSTS)
    assert after[0] == before[0]
    assert honest_fold_costs(y, scores, folds, **COSTS) != honest_fold_costs(
        flipped, scores, folds, **COSTS)


def test_selection_never_sees_test_rows(data):
    """Check that the chosen threshold depends only on the training part's labels."""
    df, y, schema, _ = data
    train, test = np.arange(300), np.arange(300, 400)
    folds = cv_folds(y[train], n_folds=4, seed=0)
    specs = [CandidateSpec("logreg")]
    kw = {"seed": 0, **COSTS}
    best, _, _ = select_strategy(df.iloc[train], y[train], schema, folds, specs, **kw)
    y_other = y.copy()
    y_other[test] = 1 - y_other[test]
    again, _, _ = select_strategy(df.iloc[train], y_other[train], schema, folds, specs, **kw)
    assert again.threshold == best.threshold


# ---------------------------------------------------------------- budget, blends, choice


def test_safety_stop_skips_unstarted_fits_and_says_so(data):
    """Check that a wall-clock stop that has already passed fits nothing more: the candidates
    are reported as skipped, the search log says it was stopped, and nothing is chosen."""
    df, y, schema, folds = data
    specs = [CandidateSpec("logreg"), CandidateSpec("hgb"), CandidateSpec("rf")]
    with pytest.raises(ConfigError, match="every candidate strategy failed"):
        select_strategy(df, y, schema, folds, specs, seed=0, time_budget_s=-1, **COSTS)


def _breaking_hgb(monkeypatch):
    import tasks.search.selection as select

    real = select.fit_fold

    def fake(spec, *args, **kwargs):
        if spec.model == "hgb":
            raise ValueError("cannot fit this")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(select, "fit_fold", fake)


def test_failed_candidate_is_reported_not_fatal(data, monkeypatch):
    """Check that a candidate that cannot fit becomes a failed row and the others go on."""
    df, y, schema, folds = data
    _breaking_hgb(monkeypatch)
    specs = [CandidateSpec("hgb"), CandidateSpec("logreg")]
    best, results, _ = select_strategy(df, y, schema, folds, specs, seed=0, **COSTS)
    assert results[0].status == "failed" and results[0].error
    assert best.spec.model == "logreg"


def test_every_candidate_failing_raises(data, monkeypatch):
    """Check that a selection where nothing fits raises a ConfigError listing the failures."""
    df, y, schema, folds = data
    _breaking_hgb(monkeypatch)
    specs = [CandidateSpec("hgb")]
    with pytest.raises(ConfigError, match="every candidate strategy failed"):
        select_strategy(df, y, schema, folds, specs, seed=0, **COSTS)


def test_blends_average_out_of_fold_scores(data):
    """Check that the blends are the top two and all core candidates, with averaged OOF scores."""
    _, y, _, folds = data
    rng = np.random.default_rng(1)
    results = []
    for name in ("logreg", "hgb", "rf"):
        oof = np.clip(rng.uniform(size=len(y)) * 0.5 + 0.4 * y, 0, 1)
        r = CVResult(CandidateSpec(name), oof, 0.5, 0.0, 0.0, 0.0, 0.5, 1.0)
        results.append(r)
    results[0].cv_cost, results[1].cv_cost, results[2].cv_cost = 0.3, 0.1, 0.2
    for r in results:
        r.fold_models = [f"{r.spec.model}{k}" for k in range(len(folds))]
    blends = blend_candidates(results, y, folds, **COSTS)
    assert blends[0].fold_models == [f"hgb{k}" for k in range(len(folds))] + [
        f"rf{k}" for k in range(len(folds))]
    assert [len(b.spec.members) for b in blends] == [2, 3]
    assert [m.model for m in blends[0].spec.members] == ["hgb", "rf"]
    np.testing.assert_allclose(blends[0].oof_scores,
                               (results[1].oof_scores + results[2].oof_scores) / 2)
    assert blends[1].fit_seconds == pytest.approx(3.0)


def test_exotic_candidate_needs_more_than_one_fold_std():
    """Check that a resampled candidate wins only by more than the fold spread."""
    core = _result("logreg", [0.50, 0.40, 0.45, 0.55, 0.50])
    close = _result("x", [0.48, 0.39, 0.44, 0.52, 0.47], CandidateSpec("logreg", "smote"))
    far = _result("x", [0.20, 0.15, 0.25, 0.20, 0.20], CandidateSpec("logreg", "smote"))
    assert choose_best([core, close]) is core
    assert choose_best([core, close, far]) is far
    assert choose_best([close]) is close  # nothing else to prefer


def test_core_candidates_and_blends_compete_on_cost_alone():
    """Check that without the one-standard-error rule the lowest CV cost wins among core
    candidates and blends."""
    a = _result("logreg", [0.5, 0.5, 0.5])
    b = _result("hgb", [0.49, 0.5, 0.5])
    blend = _result("x", [0.4, 0.5, 0.5], CandidateSpec("blend", members=(a.spec, b.spec)))
    assert choose_best([a, b], simpler_within_se=0) is b
    assert choose_best([a, b, blend], simpler_within_se=0) is blend
    assert choose_best([a, b]) is b  # the default: the rule is opt-in
    assert choose_best([a, b], simpler_within_se=1) is a  # 0.0033 apart, one paired SE


# ---------------------------------------------------------------- calibration


def _weighted_result(data):
    df, y, schema, folds = data
    return cross_validate(CandidateSpec("logreg", class_weight="balanced"), df, y, schema,
                          folds, seed=0, **COSTS)


@pytest.mark.parametrize("mode", ["never", "always", "auto"])
def test_calibration_modes(data, mode):
    """Check never/always/auto: a balanced model's inflated scores get calibrated unless never."""
    _, y, _, folds = data
    raw = _weighted_result(data)
    out = calibrate_result(raw, y, folds, mode=mode, **COSTS)
    if mode == "never":
        assert out is raw
        return
    assert out.spec.calibrate and out.spec.calibration[0] > 0
    assert out.calibrated_brier < out.brier  # balanced weights inflate scores: auto fixes them
    assert out.oof_scores.mean() == pytest.approx(y.mean(), abs=0.03)
    # a monotone map: the same rows are flagged, so the cost is unchanged
    np.testing.assert_array_equal(out.oof_scores >= out.threshold,
                                  raw.oof_scores >= raw.threshold)
    assert out.oof_cost == pytest.approx(raw.oof_cost)


def test_auto_calibration_keeps_scores_it_cannot_improve(data):
    """Check that auto leaves scores alone when calibration does not lower the CV Brier."""
    _, y, _, folds = data
    rng = np.random.default_rng(0)
    p = np.clip(rng.beta(1, 8, size=len(y)), 1e-3, 1 - 1e-3)
    y_cal = (rng.uniform(size=len(y)) < p).astype(int)  # scores calibrated by construction
    r = CVResult(CandidateSpec("logreg"), p, 0.5, 0.0, 0.0, 0.0, 0.5, 1.0)
    out = calibrate_result(r, y_cal, folds, mode="auto", **COSTS)
    assert not out.spec.calibrate
    assert out.calibrated_brier is not None


def test_calibration_of_separable_scores_keeps_decisions(data):
    """Check that calibrating perfectly separating scores never changes a decision."""
    _, y, _, folds = data
    oof = np.where(y == 1, 0.9, 0.1) + np.random.default_rng(0).uniform(0, 0.05, len(y))
    r = CVResult(CandidateSpec("rf"), oof, 0.5, 0.0, 0.0, 0.0, 1.0, 1.0)
    r.threshold = 0.5
    out = calibrate_result(r, y, folds, mode="always", **COSTS)
    np.testing.assert_array_equal(out.oof_scores >= out.threshold, y == 1)


def test_unknown_calibration_mode_is_refused(data):
    """Check that an unknown calibration mode raises a ConfigError naming the choices."""
    _, y, _, folds = data
    with pytest.raises(ConfigError, match="calibrate must be one of"):
        calibrate_result(_result("logreg", [0.1]), y, folds, mode="sometimes", **COSTS)


# ---------------------------------------------------------------- leaderboard and report


def test_leaderboard_is_sorted_marked_and_json_safe(data, monkeypatch):
    """Check that the leaderboard sorts by cost, marks the winner and holds no NaN."""
    df, y, schema, folds = data
    _breaking_hgb(monkeypatch)
    specs = [CandidateSpec("logreg"), CandidateSpec("logreg", class_weight="balanced"),
             CandidateSpec("hgb")]
    best, results, _ = select_strategy(df, y, schema, folds, specs, seed=0,
                                       calibrate="always", **COSTS)
    board = leaderboard(results, best)
    assert {"candidate", "cv_cost", "cv_cost_std", "pr_auc", "fit_seconds",
            "status"} <= set(board.columns)
    costs = [c for c in board["cv_cost"] if c is not None]
    assert costs == sorted(costs)
    assert board["status"].iloc[-1] == "failed"
    assert list(board["status"]).count("chosen (calibrated)") == 1
    json.dumps(board.to_dict(orient="records"), allow_nan=False)
    assert any(name.startswith("blend(") for name in board["candidate"])
    report = calibration_report(best, y)
    assert "Brier" in report and "calibrated" in report


@pytest.mark.slow
# ---------------------------------------------------------------- weak signal


def test_one_standard_error_rule_prefers_the_simplest_close_candidate():
    """Check that a simpler candidate within one paired standard error wins, and that a
    clearly better flexible one keeps winning."""
    lin = _result("logreg", [0.99, 0.86, 1.01, 0.92, 0.95])  # +0.012 vs blend, paired SE 0.020
    noise = _result("hgb", [0.96, 0.92, 0.99, 0.97, 0.96])  # +0.026 vs blend, paired SE 0.002
    blend = _result("x", [0.93, 0.90, 0.96, 0.95, 0.93],
                    CandidateSpec("blend", members=(lin.spec, noise.spec)))
    clear = _result("rf", [0.70, 0.66, 0.72, 0.69, 0.71])
    assert choose_best([lin, noise, blend], simpler_within_se=0) is blend  # lowest CV cost
    assert choose_best([lin, noise, blend], simpler_within_se=1.0) is lin
    assert choose_best([lin, noise, blend, clear], simpler_within_se=1.0) is clear
    # a simpler candidate outside the margin does not win
    assert choose_best([lin, blend], simpler_within_se=0.1) is blend


def _weak_signal(rows: int, seed: int):
    """A linear, weak signal (ROC AUC about 0.67), ~5 % positives, six pure-noise columns."""
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 8))
    y = (rng.random(rows) < expit(-3.2 + 0.45 * X[:, 0] + 0.3 * X[:, 1])).astype(int)
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]), y


@pytest.mark.slow
def test_weak_signal_chooses_the_linear_model():
    """On weak-signal data from a linear model, the auto search with the one-standard-error
    rule chooses logistic regression; by CV cost alone (the default) it chooses a blend."""
    from schemas.config import SplitConfig, TrainingConfig
    from tasks.search.selection import search

    X, y = _weak_signal(3000, seed=0)
    schema = infer_input_schema(X.assign(label=y), label="label", positive="1", negative="0")
    config = TrainingConfig(data="unused", label="label", split=SplitConfig(n_folds=5),
                            strategy=StrategyConfig())
    assert config.strategy.simpler_within_se == 0
    best, results, _ = search(X, y, schema, config=config)
    assert best.spec.model == "blend"  # the default: the lowest CV cost
    # The rule only chooses among the CV results (finish_selection -> choose_best): the same
    # results, chosen with one paired standard error, give what a search with
    # simpler_within_se=1 would return (searched once, not twice).
    assert choose_best(results, simpler_within_se=1).spec.model == "logreg"
