"""rareflow's scikit-learn estimators: the column caster, the feature matrix, class weights as
sample weights, IsolationForest as a classifier, averaging ensembles and the Platt map."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted

from schemas.errors import ConfigError, DataError
from tasks.decision.calibration import apply_platt
from tasks.decision.served_classifier import positive_scores
from tasks.search.hyperparams import IFOREST_TREES


def sequential_prediction(model):
    """Make every fitted forest inside ``model`` predict with one thread, and return it.

    A forest fitted with ``n_jobs > 1`` also predicts in threads, adding its trees'
    probabilities in the order the threads finish: the last bits of a score then depend on
    machine load, and two identical runs wrote different reference tables. Fitting stays
    parallel (each tree is deterministic); predicting in tree order gives the same bytes.
    """
    seen, todo = set(), [model]
    while todo:
        est = todo.pop()
        if id(est) in seen or not hasattr(est, "__dict__"):
            continue
        seen.add(id(est))
        if hasattr(est, "estimators_") and getattr(est, "n_jobs", 1) not in (None, 1):
            est.n_jobs = 1
        for value in vars(est).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                item = item[-1] if isinstance(item, tuple) else item  # pipeline steps
                if isinstance(item, BaseEstimator):
                    todo.append(item)
    return model




class FrameCaster(BaseEstimator, TransformerMixin):
    """Select the schema's columns in order: categories first (as text), then numbers (float).

    It makes the fitted pipeline accept raw DataFrames with extra columns and mixed dtypes
    (e.g. integer categories, booleans), the same at fit and at predict time. A missing
    category is NaN whether the table had NaN (CSV), None (Parquet) or pd.NA, so a model
    scores the same rows the same from either format (``missing_as_nan``; models pickled
    before it existed keep their behaviour).
    """

    def __init__(self, categorical=(), numeric=(), missing_as_nan=True):
        self.categorical = categorical
        self.numeric = numeric
        self.missing_as_nan = missing_as_nan

    def fit(self, X, y=None):
        self._check(X)
        self.n_features_in_ = len(self.categorical) + len(self.numeric)
        return self

    def transform(self, X):
        """Columns already of the right type pass through uncopied; others are converted."""
        self._check(X)
        out = {}
        for name in self.categorical:
            s = X[name]
            if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
                if getattr(self, "missing_as_nan", False) and (
                        s.dtype != object or s.isna().any()):
                    s = s.astype(object).where(s.notna(), np.nan)
                out[name] = s
            else:  # numbers, booleans or mixed values used as categories: compare as text
                out[name] = s.astype(str).where(s.notna(), np.nan).astype(object)
        for name in self.numeric:
            s = X[name]
            if s.dtype == np.float64:
                out[name] = s
                continue
            try:
                out[name] = pd.to_numeric(s, errors="raise").astype(np.float64)
            except (ValueError, TypeError) as exc:
                raise DataError(f"column {name!r} must be numeric: {exc}") from exc
        return pd.DataFrame(out, index=X.index, copy=False)

    def _check(self, X):
        if not isinstance(X, pd.DataFrame):
            raise DataError(f"expected a DataFrame of features, got {type(X).__name__}")
        missing = [c for c in [*self.categorical, *self.numeric] if c not in X.columns]
        if missing:
            raise DataError(f"input is missing column(s) {missing}")

    def get_feature_names_out(self, input_features=None):
        return np.asarray([*self.categorical, *self.numeric], dtype=object)


class CategoryCodes(TransformerMixin, BaseEstimator):
    """Ordinal codes of text categories: scikit-learn's
    ``OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, max_categories=K,
    dtype=float64)``, code for code, counted and looked up by pandas.

    Categories are sorted; when a column has ``max_categories`` or more of them, the most
    frequent ``max_categories - 1`` keep their own codes (in sorted order) and the rest share
    the next code, ties broken as scikit-learn breaks them (a stable sort of the counts).
    A category never seen in fitting gets -1. Missing values are refused: the pipeline
    imputes them as a category of their own first.

    Why not OrdinalEncoder itself: with ``max_categories`` set it counts text values one at a
    time in Python and looks each one up in a dict when encoding. At 640,000 rows x 4 text
    columns its fit and encode took 1.52 s against 0.11 s here, paid in every fold of every
    candidate (``benchmarks/results/speed.md``). ``tests/unit/test_pipeline_and_estimators.py``
    checks that both give the same codes.
    """

    def __init__(self, max_categories=None):
        self.max_categories = max_categories

    def fit(self, X, y=None):
        columns = self._columns(X)
        self.n_features_in_ = len(columns)
        self.categories_, self.codes_ = [], []
        for values in columns:
            counts = pd.Series(values, dtype=object).value_counts(sort=False, dropna=False)
            categories = sorted(counts.index)
            count = counts.loc[categories].to_numpy()
            self.categories_.append(np.asarray(categories, dtype=object))
            self.codes_.append(self._codes(count))
        return self

    def _codes(self, count: np.ndarray) -> np.ndarray:
        """Each category's code: its rank among the kept ones, the rest one shared code."""
        keep = np.ones(len(count), dtype=bool)
        if self.max_categories is not None and self.max_categories < len(count) + 1:
            frequent = self.max_categories - 1
            keep[np.argsort(count, kind="mergesort")[:len(count) - frequent]] = False
        codes = np.full(len(count), keep.sum(), dtype=np.float64)
        codes[keep] = np.arange(keep.sum())
        return codes

    def transform(self, X):
        check_is_fitted(self, "codes_")
        columns = self._columns(X)
        if len(columns) != self.n_features_in_:
            raise ValueError(f"X has {len(columns)} features, but CategoryCodes is expecting "
                             f"{self.n_features_in_} features as input")
        out = np.empty((len(columns[0]) if columns else 0, len(columns)), dtype=np.float64)
        for j, values in enumerate(columns):
            position = pd.Categorical(values, categories=self.categories_[j]).codes
            out[:, j] = np.where(position >= 0, self.codes_[j][position], -1.0)
        return out

    @staticmethod
    def _columns(X) -> list[np.ndarray]:
        """The columns as object arrays; a missing value is refused (the pipeline imputes
        missing categories as a category of their own before coding)."""
        if isinstance(X, pd.DataFrame):
            columns = [X[c].to_numpy(dtype=object) for c in X.columns]
        else:
            X = np.asarray(X, dtype=object)
            columns = [X[:, j] for j in range(X.shape[1])]
        for j, values in enumerate(columns):
            if pd.isna(values).any():
                raise ValueError(f"CategoryCodes: column {j} has missing values; impute them "
                                 "first (as a category of their own)")
        return columns


class FeatureMatrix(TransformerMixin, BaseEstimator):
    """Category codes first, then the numeric columns, written into one float64 array.

    It gives what ``ColumnTransformer([(codes, categorical), (numbers, numeric)])`` gives,
    without that one's copies of the table: selecting the numeric columns copies them, turning
    them into an array can copy them again (when the frame's columns are not in one block),
    and stacking the parts makes a third copy. Here each column is copied once, into place.

    Args:
        categorical_encoder: Fitted on the categorical columns; gives one code per column.
        numeric_imputer: Fitted on the numeric columns, or None to pass them through.
    """

    def __init__(self, categorical=(), numeric=(), categorical_encoder=None,
                 numeric_imputer=None):
        self.categorical = categorical
        self.numeric = numeric
        self.categorical_encoder = categorical_encoder
        self.numeric_imputer = numeric_imputer

    def fit(self, X, y=None):
        cats, nums = list(self.categorical), list(self.numeric)
        self.categorical_encoder_ = (clone(self.categorical_encoder).fit(X[cats])
                                     if cats else None)
        self.numeric_imputer_ = (clone(self.numeric_imputer).fit(X[nums])
                                 if nums and self.numeric_imputer is not None else None)
        self.n_features_in_ = len(cats) + len(nums)
        return self

    def transform(self, X):
        check_is_fitted(self, "n_features_in_")
        cats, nums = list(self.categorical), list(self.numeric)
        codes = (self.categorical_encoder_.transform(X[cats]) if cats
                 else np.empty((len(X), 0)))
        numbers = self.numeric_imputer_.transform(X[nums]) if self.numeric_imputer_ else None
        width = len(nums) if numbers is None else numbers.shape[1]
        out = np.empty((len(X), codes.shape[1] + width), dtype=np.float64)
        out[:, :codes.shape[1]] = codes
        del codes
        if numbers is not None:
            out[:, len(cats):] = numbers
        else:
            for j, name in enumerate(nums):
                out[:, len(cats) + j] = X[name].to_numpy(dtype=np.float64, copy=False)
        return out

    def get_feature_names_out(self, input_features=None):
        nums = (list(self.numeric_imputer_.get_feature_names_out(list(self.numeric)))
                if self.numeric_imputer_ else list(self.numeric))
        return np.asarray([*self.categorical, *nums], dtype=object)


class ClassWeightedEstimator(ClassifierMixin, BaseEstimator):
    """Give class weights as ``sample_weight`` to an estimator that has no ``class_weight``.

    It sits last in the pipeline, so the weights are computed from the labels the estimator
    actually sees (after any resampling).
    """

    def __init__(self, estimator=None, class_weight=None):
        self.estimator = estimator
        self.class_weight = class_weight

    def fit(self, X, y):
        weight = compute_sample_weight(self.class_weight, y) if self.class_weight else None
        self.estimator_ = clone(self.estimator).fit(X, y, sample_weight=weight)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class IsolationForestClassifier(ClassifierMixin, BaseEstimator):
    """Anomaly detection as a classifier: an IsolationForest learnt on the negatives.

    Its anomaly score is mapped to a probability by a one-feature logistic regression fitted
    on the training labels, so ``predict_proba`` is comparable with other candidates.
    """

    def __init__(self, n_estimators=IFOREST_TREES, max_samples="auto", random_state=None):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X, y):
        y = np.asarray(y)
        normal = X[y == 0] if (y == 0).sum() >= 20 else X
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            random_state=self.random_state,
        ).fit(normal)
        anomaly = -self.forest_.score_samples(X).reshape(-1, 1)
        self.link_ = LogisticRegression(class_weight=None).fit(anomaly, y)
        self.classes_ = self.link_.classes_
        return self

    def predict_proba(self, X):
        check_is_fitted(self)
        return self.link_.predict_proba(-self.forest_.score_samples(X).reshape(-1, 1))

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class _AveragingClassifier(ClassifierMixin, BaseEstimator):
    """Scores as the mean positive-class probability of the fitted ``estimators_``."""

    def predict_proba(self, X):
        check_is_fitted(self)
        p = np.mean([positive_scores(e, X) for e in self.estimators_], axis=0)
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class BlendClassifier(_AveragingClassifier):
    """Average the positive-class probabilities of several classifiers fitted on the same rows.

    Averaging models of different families (a linear model, boosted trees, forests) lowers
    the variance of the score, which makes the cost-optimal threshold more stable.
    """

    def __init__(self, estimators=()):
        self.estimators = estimators

    def fit(self, X, y):
        if not self.estimators:
            raise ConfigError("a blend needs at least one member estimator; got none")
        self.estimators_ = [clone(e).fit(X, y) for e in self.estimators]
        self.classes_ = np.array([0, 1])
        return self


class CrossValBag(_AveragingClassifier):
    """Average the positive-class probabilities of one estimator fitted on each training fold.

    This is cross-validation bagging: the fold models that produced the out-of-fold scores
    (which chose the strategy and the threshold) are the model that serves, so the threshold
    is applied to the very models it was tuned on, and no refit is needed.
    :meth:`from_fitted` assembles one from fold models that are already fitted.
    """

    def __init__(self, estimator=None, folds=None):
        self.estimator = estimator
        self.folds = folds

    def fit(self, X, y):
        y = np.asarray(y)
        if not self.folds:
            raise ConfigError("a cross-validation bag needs folds: a list of (train, held-out) "
                              "row positions; got none")
        self.estimators_ = [clone(self.estimator).fit(X.iloc[train], y[train])
                            for train, _ in self.folds]
        self.classes_ = np.array([0, 1])
        return self

    @classmethod
    def from_fitted(cls, estimators) -> CrossValBag:
        """A bag of estimators that are already fitted (e.g. the models of a CV run)."""
        estimators = list(estimators)
        if not estimators:
            raise ConfigError("a cross-validation bag needs at least one fitted model; got none")
        bag = cls()
        bag.estimators_ = estimators
        bag.classes_ = np.array([0, 1])
        return bag


def check_slope(slope: float) -> None:
    if not slope > 0:
        raise ConfigError(f"calibration slope must be > 0 to keep the ranking; got {slope}: "
                          "leave this model uncalibrated")


class PlattCalibrated(ClassifierMixin, BaseEstimator):
    """A classifier whose positive-class probability goes through a fixed sigmoid map.

    The map's coefficients come from out-of-fold scores (cross-validation on the training
    part), as ``CalibratedClassifierCV(ensemble=False)`` does, so the refit estimator is
    calibrated without an extra held-out part and without refitting per fold. The map is
    strictly increasing (slope > 0): decisions at a mapped threshold are unchanged.
    """

    def __init__(self, estimator=None, slope=1.0, intercept=0.0):
        self.estimator = estimator
        self.slope = slope
        self.intercept = intercept

    def fit(self, X, y):
        check_slope(self.slope)
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = np.array([0, 1])
        return self

    @classmethod
    def from_fitted(cls, estimator, *, slope: float, intercept: float) -> PlattCalibrated:
        """Calibrate an estimator that is already fitted."""
        check_slope(slope)
        model = cls(estimator, slope=slope, intercept=intercept)
        model.estimator_ = estimator
        model.classes_ = np.array([0, 1])
        return model

    def predict_proba(self, X):
        check_is_fitted(self)
        p = apply_platt(positive_scores(self.estimator_, X), self.slope, self.intercept)
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
