"""Model pipelines: preprocessing from the schema, a sampler, a weighted estimator, a threshold."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from imblearn.ensemble import BalancedRandomForestClassifier
from imblearn.pipeline import Pipeline
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    IsolationForest,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted, validate_data

from schemas.errors import ConfigError, DataError
from schemas.inference import InputSchema
from tasks.resample import make_sampler

logger = logging.getLogger(__name__)

MODELS = ("logreg", "hgb", "rf", "brf", "gboost", "iforest")
BLEND = "blend"
MISSING_CATEGORY = "__missing__"
MAX_CATEGORIES = 64
RF_MAX_TREE_ROWS = 10_000  # bootstrap rows per RandomForest tree: keeps big data affordable
LOGIT_EPS = 1e-12  # scores are clipped to [eps, 1 - eps] before taking logits


@dataclass(frozen=True)
class CandidateSpec:
    """One training strategy: model family, sampler, class weights, calibration.

    ``model="blend"`` averages the positive-class probabilities of its ``members`` (each a
    CandidateSpec fitted on the same rows). ``calibration`` holds the (slope, intercept) of a
    sigmoid map on the logit of the score, fitted on out-of-fold scores (see
    :func:`fit_platt`); with ``calibrate=True`` and no coefficients the pipeline is wrapped
    in scikit-learn's ``CalibratedClassifierCV`` instead.
    """

    model: str
    sampler: str = "none"
    class_weight: str | tuple = "none"  # "none", "balanced" or ((0, w0), (1, w1))
    calibrate: bool = False
    members: tuple = ()  # CandidateSpecs of a blend
    calibration: tuple | None = None  # (slope, intercept) on logit(score)

    @property
    def name(self) -> str:
        if self.model == BLEND:
            text = "blend(" + " + ".join(m.name for m in self.members) + ")"
        else:
            cw = self.class_weight
            cw_text = (cw if isinstance(cw, str)
                       else "{" + ",".join(f"{k}:{v:g}" for k, v in cw) + "}")
            text = f"{self.model}|{self.sampler}|{cw_text}"
        return text + "|calibrated" if self.calibrate else text

    @property
    def family(self) -> str:
        """How the leaderboard groups it: 'blend', 'anomaly', 'resampled' or 'core'."""
        if self.model == BLEND:
            return "blend"
        if self.model == "iforest":
            return "anomaly"
        return "resampled" if self.sampler != "none" else "core"

    def weights(self):
        """The class_weight argument for scikit-learn (None, 'balanced' or a dict)."""
        if self.class_weight == "none":
            return None
        if isinstance(self.class_weight, str):
            return self.class_weight
        return dict(self.class_weight)

    def as_dict(self) -> dict:
        out = {
            "model": self.model,
            "sampler": self.sampler,
            "class_weight": self.weights() if not isinstance(self.class_weight, str)
            else self.class_weight,
            "calibrate": self.calibrate,
        }
        if self.members:
            out["members"] = [m.as_dict() for m in self.members]
        if self.calibration is not None:
            out["calibration"] = {"method": "sigmoid on logit(score), fitted on out-of-fold "
                                            "scores", "slope": self.calibration[0],
                                  "intercept": self.calibration[1]}
        return out


def spec_from_config(model: str, sampler: str, class_weight, calibrate: bool = False):
    """Build a CandidateSpec from config values (mappings become hashable tuples)."""
    if isinstance(class_weight, dict):
        class_weight = tuple(sorted((int(k), float(v)) for k, v in class_weight.items()))
    return CandidateSpec(model=model, sampler=sampler, class_weight=class_weight,
                         calibrate=calibrate)


class FrameCaster(BaseEstimator, TransformerMixin):
    """Select the schema's columns in order: categories first (as text), then numbers (float).

    It makes the fitted pipeline accept raw DataFrames with extra columns and mixed dtypes
    (e.g. integer categories, booleans), the same at fit and at predict time.
    """

    def __init__(self, categorical=(), numeric=()):
        self.categorical = categorical
        self.numeric = numeric

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


class CodedHistGradientBoostingClassifier(HistGradientBoostingClassifier):
    """HistGradientBoosting for a matrix whose categorical columns hold codes 0..k-1.

    scikit-learn re-encodes categorical columns with its own OrdinalEncoder in a
    ColumnTransformer, which copies the whole matrix. When each categorical column's values
    are already exactly 0..k-1 (the pipeline's OrdinalEncoder made them, on these rows), that
    encoding is the identity, so the matrix is read as it is: same bins, same trees, same
    predictions (the predictor itself sends unknown and negative codes where missing values
    go, as the re-encoding would). Any other input takes scikit-learn's own path.
    """

    def _preprocess_X(self, X, *, reset):
        positions = np.asarray(self.categorical_features if self.categorical_features
                               is not None else [])
        if (not reset or not isinstance(X, np.ndarray) or X.ndim != 2
                or X.dtype != np.float64 or positions.dtype.kind not in "iu"
                or not len(positions)):
            return super()._preprocess_X(X, reset=reset)
        is_categorical = np.zeros(X.shape[1], dtype=bool)
        is_categorical[positions] = True
        known = [None] * X.shape[1]
        for j in np.flatnonzero(is_categorical):
            column = X[:, j]
            values = np.unique(column[~np.isnan(column)])
            if len(values) > self.max_bins or not np.array_equal(values,
                                                                 np.arange(len(values))):
                return super()._preprocess_X(X, reset=reset)
            known[j] = values.astype(np.float64)
        X = validate_data(self, X, dtype=[np.float64], ensure_all_finite=False, reset=True)
        self.is_categorical_ = is_categorical
        self._preprocessor = None
        self._is_categorical_remapped = is_categorical
        return X, known


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

    def __init__(self, n_estimators=200, max_samples="auto", random_state=None):
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


def to_logit(scores) -> np.ndarray:
    """Logit of scores clipped to [LOGIT_EPS, 1 - LOGIT_EPS] (strictly increasing inside)."""
    p = np.clip(np.asarray(scores, dtype=float), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def apply_platt(scores, slope: float, intercept: float) -> np.ndarray:
    """Calibrated probability ``sigmoid(slope * logit(score) + intercept)``."""
    z = slope * to_logit(scores) + intercept
    return 0.5 * (1 + np.tanh(z / 2))  # the logistic function, without overflow warnings


def fit_platt(y, scores, *, start: tuple[float, float] | None = None) -> tuple[float, float]:
    """Fit ``sigmoid(a * logit(score) + b)`` to labels (Platt scaling on the logit).

    A pure shift ``b`` is the classic prior correction for class weights or resampling; the
    slope ``a`` also fixes over- or under-confident scores. Fit it on out-of-fold scores,
    never on the training predictions of the model it calibrates.

    The objective is scikit-learn's ``LogisticRegression(C=1.0)`` on the one feature
    ``logit(score)``: log loss plus ``a**2 / 2`` (mild regularisation: a perfectly separating
    score would otherwise get an endless slope; the intercept is not penalised). It is solved
    by Newton's method with step halving, which converges in a few passes over the rows
    (``start``: a close solution to begin from, e.g. the map fitted on all rows).

    Returns:
        (slope, intercept); the slope is positive when scores rank positives higher.
    """
    y = np.asarray(y).astype(np.float64)
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("calibration needs both classes among the labels")
    x = to_logit(scores)

    def loss(a, b):  # log(1 + e^z) - y z, summed, plus the slope penalty
        z = a * x + b
        return float(np.logaddexp(0.0, z).sum() - y @ z + 0.5 * a * a)

    if start is None:  # the best constant: intercept = log odds of the labels
        rate = y.mean()
        a, b = 0.0, float(np.log(rate) - np.log1p(-rate))
    else:
        a, b = float(start[0]), float(start[1])
    current = loss(a, b)
    for _ in range(100):
        p = 0.5 * (1 + np.tanh((a * x + b) / 2))
        r, w = p - y, p * (1 - p)
        grad = np.array([x @ r + a, r.sum()])
        wx = w * x
        hess = np.array([[wx @ x + 1.0, wx.sum()], [wx.sum(), w.sum()]])
        # the Hessian is positive definite (the slope penalty adds 1 to its first entry)
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        size = 1.0
        while size > 1e-10:  # halve the step until the loss does not rise
            trial = loss(a - size * step[0], b - size * step[1])
            if trial <= current:
                break
            size /= 2
        else:
            break  # no step lowers the loss: converged to rounding
        a, b, current = a - size * step[0], b - size * step[1], trial
        if np.max(np.abs(size * step)) < 1e-9 * (1 + abs(a) + abs(b)):
            break
    return float(a), float(b)


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
        self._check_slope()
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = np.array([0, 1])
        return self

    @classmethod
    def from_fitted(cls, estimator, *, slope: float, intercept: float) -> PlattCalibrated:
        """Calibrate an estimator that is already fitted."""
        model = cls(estimator, slope=slope, intercept=intercept)
        model._check_slope()
        model.estimator_ = estimator
        model.classes_ = np.array([0, 1])
        return model

    def _check_slope(self):
        if not self.slope > 0:
            raise ConfigError(f"calibration slope must be > 0 to keep the ranking; got "
                              f"{self.slope}: leave this model uncalibrated")

    def predict_proba(self, X):
        check_is_fitted(self)
        p = apply_platt(positive_scores(self.estimator_, X), self.slope, self.intercept)
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def uses_native_categories(model: str) -> bool:
    """Tree models read ordinal category codes directly; linear models need one-hot."""
    return model != "logreg"


def reads_missing_natively(spec: CandidateSpec) -> bool:
    """HistGradientBoosting learns where missing numbers go at every split: it needs no
    median imputation and no missing-indicator columns (half the numeric matrix), unless a
    sampler that interpolates between rows comes first (those cannot handle NaN)."""
    return spec.model == "hgb" and spec.sampler in ("none", "random_under", "random_over")


def make_estimator(spec: CandidateSpec, *, n_categorical: int, seed: int, n_jobs: int = 1,
                   n_rows: int | None = None):
    """The estimator of a candidate, with class weights applied its own way.

    Args:
        n_rows: Rows it will be fitted on, if known: on larger tables RandomForest grows
            200 trees of at most ``RF_MAX_TREE_ROWS`` bootstrap rows each, so it stays
            affordable.
    """
    cw = spec.weights()
    if spec.model == "logreg":
        return LogisticRegression(C=1.0, max_iter=3000, class_weight=cw)
    if spec.model == "hgb":
        return CodedHistGradientBoostingClassifier(
            learning_rate=0.05,
            max_iter=400,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=30,
            class_weight=cw,
            categorical_features=list(range(n_categorical)) or None,
            random_state=seed,
        )
    if spec.model == "rf":
        big = n_rows is not None and n_rows > RF_MAX_TREE_ROWS
        return RandomForestClassifier(
            n_estimators=200 if big else 300,
            min_samples_leaf=3,
            max_features="sqrt",
            max_samples=RF_MAX_TREE_ROWS / n_rows if big else None,
            class_weight="balanced_subsample" if cw == "balanced" else cw,
            n_jobs=n_jobs,
            random_state=seed,
        )
    if spec.model == "brf":
        return BalancedRandomForestClassifier(
            n_estimators=300,
            sampling_strategy="all",
            replacement=True,
            bootstrap=False,
            class_weight=cw,
            n_jobs=n_jobs,
            random_state=seed,
        )
    if spec.model == "gboost":
        return ClassWeightedEstimator(
            GradientBoostingClassifier(n_estimators=200, max_depth=3, random_state=seed),
            class_weight=cw,
        )
    if spec.model == "iforest":
        return IsolationForestClassifier(random_state=seed)
    raise ConfigError(f"unknown model {spec.model!r}; choose one of {list(MODELS)}")


def make_pipeline(
    spec: CandidateSpec,
    schema: InputSchema,
    *,
    min_class_rows: int,
    minority_share: float,
    seed: int,
    n_jobs: int = 1,
    n_rows: int | None = None,
):
    """Build cast → impute/encode → sampler → scale/one-hot → estimator as an imblearn Pipeline.

    The sampler works on imputed, ordinal-encoded rows (so SMOTENC sees real categories) and,
    inside an imblearn Pipeline, runs only in ``fit``: scoring never resamples. A blend is a
    :class:`BlendClassifier` of its members' pipelines; a calibrated spec is wrapped in
    :class:`PlattCalibrated` (or ``CalibratedClassifierCV`` when it has no coefficients).

    Args:
        n_rows: Rows the pipeline will be fitted on, if known (sizes some estimators).
    """
    if spec.calibrate:
        base = replace(spec, calibrate=False, calibration=None)
        pipe = make_pipeline(base, schema, min_class_rows=min_class_rows,
                             minority_share=minority_share, seed=seed, n_jobs=n_jobs,
                             n_rows=n_rows)
        if spec.calibration is not None:
            slope, intercept = spec.calibration
            return PlattCalibrated(pipe, slope=slope, intercept=intercept)
        return CalibratedClassifierCV(
            pipe, method="sigmoid", cv=StratifiedKFold(3, shuffle=True, random_state=seed)
        )
    if spec.model == BLEND:
        return BlendClassifier([
            make_pipeline(m, schema, min_class_rows=min_class_rows,
                          minority_share=minority_share, seed=seed, n_jobs=n_jobs,
                          n_rows=n_rows)
            for m in spec.members
        ])
    cats, nums = schema.categorical, schema.numeric
    n_cat = len(cats)
    prepare = FeatureMatrix(
        categorical=cats,
        numeric=nums,
        categorical_encoder=SkPipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                ("codes", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                         max_categories=MAX_CATEGORIES, dtype=np.float64)),
            ]
        ),
        numeric_imputer=None if reads_missing_natively(spec) else
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
    )
    steps = [("cast", FrameCaster(categorical=cats, numeric=nums)), ("prepare", prepare)]
    sampler = make_sampler(
        spec.sampler,
        categorical_idx=list(range(n_cat)),
        min_class_rows=min_class_rows,
        minority_share=minority_share,
        seed=seed,
    )
    if sampler is not None:
        steps.append(("sample", sampler))
    if not uses_native_categories(spec.model):
        steps.append(
            (
                "encode",
                ColumnTransformer(
                    [
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                         list(range(n_cat))),
                    ],
                    remainder=StandardScaler(),
                ),
            )
        )
    estimator = make_estimator(spec, n_categorical=n_cat, seed=seed, n_jobs=n_jobs,
                               n_rows=n_rows)
    steps.append(("model", estimator))
    return Pipeline(steps)


def fit_on_rows(pipe, X: pd.DataFrame, rows: np.ndarray, y: np.ndarray):
    """``pipe.fit(X.iloc[rows], y)``, freeing each step's input once its output exists.

    An imblearn Pipeline is fitted step by step as its own ``fit`` does (each step fitted in
    place; samplers resample), but the copy of the rows is dropped as soon as the features
    are encoded instead of living through the estimator's fit: at a million rows that is the
    size of the fold's table. Anything else is simply fitted.
    """
    if not isinstance(pipe, Pipeline) or pipe.memory is not None:
        return pipe.fit(X.iloc[rows], y)
    Xt, yt = X.iloc[rows], y
    for _, step in pipe.steps[:-1]:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if hasattr(step, "fit_resample"):
            Xt, yt = step.fit_resample(Xt, yt)
        else:
            Xt = step.fit_transform(Xt, yt)
    pipe.steps[-1][1].fit(Xt, yt)
    return pipe


def pipeline_for(spec: CandidateSpec, schema: InputSchema, y, *, seed: int, n_jobs: int = 1):
    """:func:`make_pipeline` sized for the labels ``y`` it is about to be fitted on."""
    y = np.asarray(y)
    return make_pipeline(spec, schema, min_class_rows=int(min(y.sum(), len(y) - y.sum())),
                         minority_share=float(y.mean()), seed=seed, n_jobs=n_jobs,
                         n_rows=len(y))


class ThresholdedModel:
    """A fitted pipeline with its cost-based decision threshold: what the registry stores.

    ``score(X)`` is the positive-class probability, ``decide(X)`` is ``score >= threshold``.
    ``calibrated`` says whether ``score`` went through a calibration map fitted on
    out-of-fold scores (so it can be read as a probability).
    """

    def __init__(self, pipeline, threshold: float, schema: InputSchema, spec: CandidateSpec,
                 calibrated: bool = False):
        self.pipeline = pipeline
        self.threshold = float(threshold)
        self.schema = schema
        self.spec = spec
        self.calibrated = calibrated

    def score(self, X: pd.DataFrame) -> np.ndarray:
        return positive_scores(self.pipeline, X)

    def decide(self, X: pd.DataFrame, scores: np.ndarray | None = None) -> np.ndarray:
        scores = self.score(X) if scores is None else scores
        return (scores >= self.threshold).astype(np.int8)


def positive_scores(estimator, X) -> np.ndarray:
    """Probability of class 1 from a fitted binary classifier."""
    proba = estimator.predict_proba(X)
    classes = list(getattr(estimator, "classes_", [0, 1]))
    return proba[:, classes.index(1)]


@dataclass
class FitResult:
    model: ThresholdedModel
    fit_seconds: float
    info: dict = field(default_factory=dict)


def fit_final(
    spec: CandidateSpec,
    X: pd.DataFrame,
    y: np.ndarray,
    schema: InputSchema,
    *,
    threshold: float,
    seed: int,
    n_jobs: int = 1,
    fold_models: list | None = None,
) -> FitResult:
    """The final model of the chosen strategy; it keeps the CV threshold.

    With ``fold_models`` (the fitted models of the strategy's cross-validation, see
    ``CVResult.fold_models``) the final model is their average, a :class:`CrossValBag`:
    the threshold was chosen on exactly these models' out-of-fold scores, and nothing is
    refitted. Without them the strategy is refitted on all of ``X``.

    A calibrated spec carries its calibration map (fitted on out-of-fold scores), and
    ``threshold`` is then on the calibrated scale.
    """
    started = time.perf_counter()
    if fold_models:
        model = CrossValBag.from_fitted(fold_models)
        if spec.calibrate:
            if spec.calibration is None:
                raise ConfigError("a bag of fold models can only be calibrated with a map "
                                  "fitted on out-of-fold scores; the spec has none: refit "
                                  "without fold_models")
            slope, intercept = spec.calibration
            model = PlattCalibrated.from_fitted(model, slope=slope, intercept=intercept)
        seconds = time.perf_counter() - started
        logger.info("Final model: %s as the average of %d fold models", spec.name,
                    len(fold_models))
        return FitResult(
            ThresholdedModel(model, threshold, schema, spec, calibrated=spec.calibrate),
            seconds,
            {"final_model": f"average of the {len(fold_models)} cross-validation fold models "
                            "that chose the threshold (no refit)"},
        )
    pipe = pipeline_for(spec, schema, y, seed=seed, n_jobs=n_jobs).fit(X, y)
    seconds = time.perf_counter() - started
    logger.info("Fitted %s on %d rows in %.1f s", spec.name, len(y), seconds)
    return FitResult(ThresholdedModel(pipe, threshold, schema, spec, calibrated=spec.calibrate),
                     seconds, {"final_model": f"refitted on all {len(y)} training rows"})


fit_task = task(fit_final, name="fit", cache_policy=NO_CACHE)
