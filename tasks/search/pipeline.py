"""The model pipeline of a candidate: cast → impute/encode → sampler → scale/one-hot →
weighted estimator, as an imbalanced-learn Pipeline (resampling happens in ``fit`` only)."""

from __future__ import annotations

import numpy as np
from imblearn.ensemble import BalancedRandomForestClassifier
from imblearn.pipeline import Pipeline
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from schemas.config import MODELS
from schemas.errors import ConfigError
from schemas.inference import InputSchema
from tasks.search._fast_hgb import CodedHistGradientBoostingClassifier
from tasks.search.candidates import BLEND, CandidateSpec
from tasks.search.estimators import (
    BlendClassifier,
    CategoryCodes,
    ClassWeightedEstimator,
    FeatureMatrix,
    FrameCaster,
    IsolationForestClassifier,
    PlattCalibrated,
)
from tasks.search.hyperparams import (
    BRF_PARAMS,
    GBOOST_PARAMS,
    HGB_PARAMS,
    LOGREG_PARAMS,
    MAX_CATEGORIES,
    MISSING_CATEGORY,
    RF_MAX_TREE_ROWS,
    RF_PARAMS,
    RF_TREES,
    RF_TREES_BIG,
)
from tasks.search.samplers import make_sampler

# samplers that copy or drop whole rows: the rows keep their missing values
ROW_SAMPLERS = ("none", "random_under", "random_over")


def uses_native_categories(model: str) -> bool:
    """Tree models read ordinal category codes directly; linear models need one-hot."""
    return model != "logreg"


def reads_missing_natively(spec: CandidateSpec) -> bool:
    """HistGradientBoosting learns where missing numbers go at every split: it needs no
    median imputation and no missing-indicator columns (half the numeric matrix), unless a
    sampler that interpolates between rows comes first (those cannot handle NaN)."""
    return spec.model == "hgb" and spec.sampler in ROW_SAMPLERS


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
        return LogisticRegression(**LOGREG_PARAMS, class_weight=cw)
    if spec.model == "hgb":
        return CodedHistGradientBoostingClassifier(
            **HGB_PARAMS, class_weight=cw,
            categorical_features=list(range(n_categorical)) or None, random_state=seed)
    if spec.model == "rf":
        big = n_rows is not None and n_rows > RF_MAX_TREE_ROWS
        return RandomForestClassifier(
            **RF_PARAMS, n_estimators=RF_TREES_BIG if big else RF_TREES,
            max_samples=RF_MAX_TREE_ROWS / n_rows if big else None,
            class_weight="balanced_subsample" if cw == "balanced" else cw,
            n_jobs=n_jobs, random_state=seed)
    if spec.model == "brf":
        return BalancedRandomForestClassifier(**BRF_PARAMS, class_weight=cw, n_jobs=n_jobs,
                                              random_state=seed)
    if spec.model == "gboost":
        return ClassWeightedEstimator(
            GradientBoostingClassifier(**GBOOST_PARAMS, random_state=seed), class_weight=cw)
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
        base = spec.uncalibrated()
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
    return single_pipeline(spec, schema, min_class_rows=min_class_rows,
                           minority_share=minority_share, seed=seed, n_jobs=n_jobs,
                           n_rows=n_rows)


def feature_matrix(spec: CandidateSpec, schema: InputSchema) -> FeatureMatrix:
    """Category codes (missing ones as a category of their own), then the numbers, imputed
    with missing-indicator columns unless the model reads missing numbers itself."""
    encoder = SkPipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
        ("codes", CategoryCodes(max_categories=MAX_CATEGORIES)),
    ])
    imputer = (None if reads_missing_natively(spec) else
               SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))
    return FeatureMatrix(categorical=schema.categorical, numeric=schema.numeric,
                         categorical_encoder=encoder, numeric_imputer=imputer)


def one_hot_and_scale(n_categorical: int) -> ColumnTransformer:
    """What a linear model reads: one-hot categories and standardised numbers."""
    return ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
          list(range(n_categorical)))],
        remainder=StandardScaler(),
    )


def single_pipeline(spec: CandidateSpec, schema: InputSchema, *, min_class_rows: int,
                    minority_share: float, seed: int, n_jobs: int = 1,
                    n_rows: int | None = None) -> Pipeline:
    """The imblearn Pipeline of one (not blended, not calibrated) candidate."""
    cats, nums = schema.categorical, schema.numeric
    steps = [("cast", FrameCaster(categorical=cats, numeric=nums)),
             ("prepare", feature_matrix(spec, schema))]
    sampler = make_sampler(spec.sampler, categorical_idx=list(range(len(cats))),
                           min_class_rows=min_class_rows, minority_share=minority_share,
                           seed=seed)
    if sampler is not None:
        steps.append(("sample", sampler))
    if not uses_native_categories(spec.model):
        steps.append(("encode", one_hot_and_scale(len(cats))))
    steps.append(("model", make_estimator(spec, n_categorical=len(cats), seed=seed,
                                          n_jobs=n_jobs, n_rows=n_rows)))
    return Pipeline(steps)


def pipeline_for(spec: CandidateSpec, schema: InputSchema, y, *, seed: int, n_jobs: int = 1):
    """:func:`make_pipeline` sized for the labels ``y`` it is about to be fitted on."""
    y = np.asarray(y)
    return make_pipeline(spec, schema, min_class_rows=int(min(y.sum(), len(y) - y.sum())),
                         minority_share=float(y.mean()), seed=seed, n_jobs=n_jobs,
                         n_rows=len(y))
