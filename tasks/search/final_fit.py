"""The final model of the chosen strategy, and what the registry stores: a scikit-learn
classifier deciding at its cost-based threshold
(:class:`tasks.decision.served_classifier.RareflowClassifier`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import ConfigError
from schemas.inference import InputSchema
from tasks.decision.calibration import apply_platt, population_shift
from tasks.decision.costs import DecisionCosts
from tasks.decision.served_classifier import (
    RareflowClassifier,
    ThresholdedModel,
    class_values,
    served_classifier,
)
from tasks.search.candidates import CandidateSpec
from tasks.search.estimators import CrossValBag, PlattCalibrated, sequential_prediction
from tasks.search.pipeline import pipeline_for

# ThresholdedModel stays importable from here: versions written by rareflow 0.2 name it
__all__ = ["FitResult", "ThresholdedModel", "fit_final", "fit_task"]

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: RareflowClassifier
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
    costs: DecisionCosts | None = None,
) -> FitResult:
    """The final model of the chosen strategy; it keeps the CV threshold.

    With ``fold_models`` (the fitted models of the strategy's cross-validation, see
    ``CVResult.fold_models``) the final model is their average, a :class:`CrossValBag`:
    the threshold was chosen on exactly these models' out-of-fold scores, and nothing is
    refitted. Without them the strategy is refitted on all of ``X``.

    A calibrated spec carries its calibration map (fitted on out-of-fold scores), and
    ``threshold`` is then on the calibrated scale.

    The result's model is the served classifier: ``classes_`` are the label values of
    ``X[schema.label]`` (when ``X`` holds the label column) and ``costs`` give its
    ``score``.
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
        info = {"final_model": f"average of the {len(fold_models)} cross-validation fold "
                               "models that chose the threshold (no refit)"}
    else:
        model = sequential_prediction(
            pipeline_for(spec, schema, y, seed=seed, n_jobs=n_jobs).fit(X, y))
        seconds = time.perf_counter() - started
        logger.info("Fitted %s on %d rows in %.1f s", spec.name, len(y), seconds)
        info = {"final_model": f"refitted on all {len(y)} training rows"}
    labels = X[schema.label] if schema.label in X.columns else None
    negative, positive = class_values(labels, y, schema)
    model, threshold = in_population_units(model, threshold, costs)
    served = served_classifier(model, threshold=threshold, schema=schema, spec=spec,
                               negative=negative, positive=positive, costs=costs)
    return FitResult(served, seconds, info)


def in_population_units(model, threshold: float, costs: DecisionCosts | None):
    """A model fitted on a negative sample (``costs.sample_rate`` below 1) with its scores put
    back at the population's prevalence (:func:`population_shift`, as a fixed Platt map that
    any rareflow with calibration loads) and its threshold moved with them, so the same rows
    are flagged; any other model as it is."""
    if costs is None or costs.sample_rate == 1.0:
        return model, threshold
    slope, intercept = population_shift(costs.sample_rate)
    moved = threshold if threshold > 1 else float(apply_platt(threshold, slope, intercept))
    return PlattCalibrated.from_fitted(model, slope=slope, intercept=intercept), moved


fit_task = task(fit_final, name="fit", cache_policy=NO_CACHE)
