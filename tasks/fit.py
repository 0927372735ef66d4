"""The final model of the chosen strategy, and what the registry stores: a pipeline with its
cost-based threshold."""

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
from tasks.candidates import CandidateSpec
from tasks.estimators import CrossValBag, PlattCalibrated, positive_scores
from tasks.pipeline import pipeline_for

logger = logging.getLogger(__name__)


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

    def __setstate__(self, state: dict) -> None:
        schema = state.get("schema")
        if isinstance(schema, InputSchema):  # rebuilt: rareflow 0.1 pickled it another way
            state = {**state, "schema": InputSchema.model_validate(schema.model_dump())}
        self.__dict__.update(state)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        return positive_scores(self.pipeline, X)

    def decide(self, X: pd.DataFrame, scores: np.ndarray | None = None) -> np.ndarray:
        scores = self.score(X) if scores is None else scores
        return (scores >= self.threshold).astype(np.int8)


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
