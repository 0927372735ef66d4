"""Leakage tests: resampling only ever sees training rows, and never changes what is scored."""

import numpy as np
import pytest
from imblearn.over_sampling import SMOTENC

from schemas.demo import LABEL
from tasks.data.demo_tables import make_demo_data
from tasks.data.split import cv_folds, stratified_split
from tasks.data.validation import validate_training_data
from tasks.decision.costs import DecisionCosts
from tasks.search.candidates import CandidateSpec
from tasks.search.cross_validation import cross_validate
from tasks.search.pipeline import make_pipeline

COSTS = DecisionCosts(fn_cost=10, fp_cost=1)


@pytest.fixture(scope="module")
def data():
    df = make_demo_data(4000, positive_rate=0.05, seed=2)
    d = validate_training_data(df, label=LABEL, positive="1", test_size=0.25, n_folds=4)
    split = stratified_split(d.X, d.y, test_size=0.25, seed=0)
    return d, split


@pytest.fixture
def calls(monkeypatch):
    """Record the number of rows every SMOTENC.fit_resample call receives."""
    seen = []
    original = SMOTENC.fit_resample

    def spy(self, X, y, **kw):
        seen.append(len(y))
        return original(self, X, y, **kw)

    monkeypatch.setattr(SMOTENC, "fit_resample", spy)
    return seen


def test_resampling_runs_in_fit_only_and_scores_every_test_row(data, calls):
    """Check that the sampler sees exactly the training rows, once, and never the test rows."""
    d, split = data
    X_tr, y_tr = d.X.iloc[split.train_idx], d.y[split.train_idx]
    X_te = d.X.iloc[split.test_idx]
    pipe = make_pipeline(CandidateSpec("logreg", "smote", "none"), d.schema,
                         min_class_rows=int(y_tr.sum()), minority_share=float(y_tr.mean()),
                         seed=0)
    assert pipe.named_steps["sample"].__class__ is SMOTENC  # categorical columns → SMOTENC
    pipe.fit(X_tr, y_tr)
    assert calls == [len(y_tr)]
    proba = pipe.predict_proba(X_te)
    assert proba.shape == (len(X_te), 2)
    assert calls == [len(y_tr)], "predicting must not resample"


def test_cv_resamples_inside_each_training_fold_only(data, calls):
    """Check that in CV each sampler call gets only that fold's training rows."""
    d, split = data
    X_tr, y_tr = d.X.iloc[split.train_idx], d.y[split.train_idx]
    folds = cv_folds(y_tr, n_folds=4, seed=0)
    result = cross_validate(CandidateSpec("logreg", "smote", "none"), X_tr, y_tr, d.schema,
                            folds, costs=COSTS, seed=0)
    assert calls == [len(train) for train, _ in folds]
    assert not np.isnan(result.oof_scores).any() and len(result.oof_scores) == len(y_tr)


def test_threshold_comes_from_training_rows_only(data):
    """Check that the CV threshold ignores test rows: changing them changes nothing."""
    d, split = data
    X_tr, y_tr = d.X.iloc[split.train_idx], d.y[split.train_idx]
    folds = cv_folds(y_tr, n_folds=4, seed=0)
    spec = CandidateSpec("logreg", "none", "balanced")
    first = cross_validate(spec, X_tr, y_tr, d.schema, folds, costs=COSTS, seed=0)
    # the threshold is a function of (train rows, folds, spec) alone; re-running on a copy of
    # the full table with test rows scrambled must give the same train part and threshold
    scrambled = d.X.copy()
    scrambled.iloc[split.test_idx] = scrambled.iloc[split.test_idx[::-1]].to_numpy()
    again = cross_validate(spec, scrambled.iloc[split.train_idx], y_tr, d.schema, folds,
                           costs=COSTS, seed=0)
    assert again.threshold == first.threshold


def test_label_column_is_never_a_model_input(data):
    """Check that the fitted pipeline ignores the label column even though X carries it."""
    d, split = data
    assert LABEL in d.X.columns and LABEL not in d.schema.feature_names
    X_tr, y_tr = d.X.iloc[split.train_idx], d.y[split.train_idx]
    X_te = d.X.iloc[split.test_idx]
    pipe = make_pipeline(CandidateSpec("logreg", "none", "none"), d.schema,
                         min_class_rows=int(y_tr.sum()), minority_share=float(y_tr.mean()),
                         seed=0).fit(X_tr, y_tr)
    with_label = pipe.predict_proba(X_te)
    flipped = pipe.predict_proba(X_te.assign(**{LABEL: 1 - X_te[LABEL]}))
    np.testing.assert_array_equal(with_label, flipped)
    np.testing.assert_array_equal(with_label, pipe.predict_proba(X_te.drop(columns=LABEL)))
