"""Tests of the copy-free fitting path: the same models as scikit-learn's, with less memory.

FeatureMatrix must give ColumnTransformer's matrix, CodedHistGradientBoostingClassifier must
give HistGradientBoostingClassifier's predictions, and fit_on_rows must give Pipeline.fit's
model while dropping the fold's copy of the rows before the estimator is fitted.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OrdinalEncoder

from schemas.inference import infer_input_schema
from tasks.decision.served_classifier import positive_scores
from tasks.search._fast_hgb import CodedHistGradientBoostingClassifier
from tasks.search._fold_memory import fit_on_rows
from tasks.search.candidates import CandidateSpec
from tasks.search.estimators import CategoryCodes, FeatureMatrix
from tasks.search.pipeline import pipeline_for

HGB_PARAMS = dict(learning_rate=0.1, max_iter=60, max_leaf_nodes=15, min_samples_leaf=20,
                  early_stopping=True, validation_fraction=0.15, n_iter_no_change=10,
                  class_weight="balanced", random_state=0)


def _frame(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "z": rng.normal(size=n),
        "colour": rng.choice(["red", "green", "blue", None], n, p=[0.5, 0.3, 0.15, 0.05]),
        "shop": rng.choice([f"s{i}" for i in range(80)], n),  # more than MAX_CATEGORIES
    })
    df.loc[rng.random(n) < 0.05, "x"] = np.nan
    logit = 2 * df["z"] - 3 + (df["colour"] == "red") + 0.5 * df["x"].fillna(0)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df, y


def _encoder():
    return SkPipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
        ("codes", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                 max_categories=64, dtype=np.float64)),
    ])


@pytest.mark.parametrize("cats, nums", [(["colour", "shop"], ["x", "z"]), ([], ["x", "z"]),
                                        (["colour"], [])])
@pytest.mark.parametrize("impute", [False, True])
def test_feature_matrix_equals_column_transformer(cats, nums, impute):
    """Check that FeatureMatrix with CategoryCodes gives ColumnTransformer's matrix with
    OrdinalEncoder, unseen categories included."""
    df, _ = _frame()
    df["colour"] = df["colour"].where(df["colour"].notna(), np.nan)  # as FrameCaster gives it
    imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    parts = ([("cat", _encoder(), cats)] if cats else []) + (
        [("num", imputer if impute else "passthrough", nums)] if nums else [])
    reference = ColumnTransformer(parts, verbose_feature_names_out=False).fit(df)
    codes = SkPipeline([("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("codes", CategoryCodes(max_categories=64))])  # as the pipeline has
    ours = FeatureMatrix(categorical=cats, numeric=nums, categorical_encoder=codes,
                         numeric_imputer=imputer if impute else None).fit(df)
    new = df.head(400).assign(colour="purple")  # a colour never seen in training
    for frame in (df, new):
        got = ours.transform(frame)
        assert got.dtype == np.float64 and got.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(got, reference.transform(frame))
    assert list(ours.get_feature_names_out()) == list(reference.get_feature_names_out())


def _codes(n=4000, seed=1, gap=False):
    """A matrix like the pipeline's: 2 category-code columns, then 3 numbers with NaN."""
    rng = np.random.default_rng(seed)
    codes = np.column_stack([rng.integers(0, 5, n), rng.integers(0, 12, n)]).astype(float)
    if gap:  # code 2 never occurs in the first column (e.g. after undersampling)
        codes[codes[:, 0] == 2, 0] = 3
    numbers = rng.normal(size=(n, 3))
    numbers[rng.random((n, 3)) < 0.04] = np.nan
    X = np.ascontiguousarray(np.column_stack([codes, numbers]))
    logit = np.nan_to_num(numbers[:, 0]) * 1.5 - 2.5 + (codes[:, 0] == 1) - (codes[:, 1] > 8)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.mark.parametrize("gap", [False, True])
def test_coded_hgb_predicts_exactly_like_histgradientboosting(gap):
    """Check identical predictions to scikit-learn's estimator, also for codes never seen
    (unknown, negative) and missing values; codes with a gap take scikit-learn's own path."""
    X, y = _codes(gap=gap)
    stock = HistGradientBoostingClassifier(categorical_features=[0, 1], **HGB_PARAMS).fit(X, y)
    ours = CodedHistGradientBoostingClassifier(categorical_features=[0, 1],
                                               **HGB_PARAMS).fit(X, y)
    assert (ours._preprocessor is None) == (not gap)  # read in place only when 0..k-1
    assert ours.n_iter_ == stock.n_iter_ and ours.n_features_in_ == 5
    new, _ = _codes(n=600, seed=2)
    new[:40, 0] = -1  # the pipeline's code for a category unseen in training
    new[40:80, 1] = 12  # a code beyond the training codes
    new[80:120, 0] = np.nan
    for frame in (X, new):
        np.testing.assert_array_equal(ours.predict_proba(frame), stock.predict_proba(frame))


@pytest.mark.parametrize("spec", [CandidateSpec("hgb", "none", "balanced"),
                                  CandidateSpec("hgb", "random_under", "none"),
                                  CandidateSpec("logreg", "smote", "none"),
                                  CandidateSpec("rf", "none", "balanced")])
def test_fit_on_rows_gives_the_model_pipeline_fit_gives(spec):
    """Check that the step-by-step fit equals Pipeline.fit on the same rows, samplers too."""
    df, y = _frame()
    schema = infer_input_schema(df.assign(label=y), label="label", positive="1", negative="0")
    rows = np.flatnonzero(np.arange(len(y)) % 5 != 0)
    plain = pipeline_for(spec, schema, y[rows], seed=0).fit(df.iloc[rows], y[rows])
    lean = fit_on_rows(pipeline_for(spec, schema, y[rows], seed=0), df, rows, y[rows])
    held = df.iloc[np.flatnonzero(np.arange(len(y)) % 5 == 0)]
    np.testing.assert_array_equal(positive_scores(lean, held), positive_scores(plain, held))


class _Spy(TransformerMixin, BaseEstimator):
    """Remembers (weakly) the frame it was fitted on."""

    def fit(self, X, y=None):
        self.seen_ = weakref.ref(X)
        return self

    def transform(self, X):
        return X.to_numpy(dtype=float)


class _CheckFreed(ClassifierMixin, BaseEstimator):
    """Records whether the spy's frame still existed while it was being fitted."""

    def __init__(self, spy=None):
        self.spy = spy

    def fit(self, X, y):
        gc.collect()
        self.frame_alive_during_fit_ = self.spy.seen_() is not None
        self.classes_ = np.array([0, 1])
        return self


def test_fit_on_rows_frees_the_rows_before_the_estimator_fits():
    """Check that the fold's copy of the rows is gone while the estimator fits (it is alive
    all along with Pipeline.fit): the memory the lean path exists to save."""
    from imblearn.pipeline import Pipeline

    df, y = _frame(n=200)
    spy = _Spy()
    pipe = Pipeline([("spy", spy), ("model", _CheckFreed(spy))])
    fit_on_rows(pipe, df[["x", "z"]], np.arange(150), y[:150])
    assert pipe.named_steps["model"].frame_alive_during_fit_ is False
    pipe.fit(df[["x", "z"]].iloc[np.arange(150)], y[:150])
    assert pipe.named_steps["model"].frame_alive_during_fit_ is True
