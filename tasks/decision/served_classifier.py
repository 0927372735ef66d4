"""What the registry serves: a fitted scikit-learn classifier that decides at the cost threshold.

A version's ``model.joblib`` holds a :class:`RareflowClassifier`, scikit-learn's own shape for a
classifier with a chosen threshold: ``FixedThresholdClassifier(FrozenEstimator(model))``.

* ``predict(X)`` decides ``P(positive) >= threshold`` (the threshold that minimised
  ``fn_cost·FN + fp_cost·FP`` on out-of-fold training scores) and returns the data's own
  label values; nothing public decides at 0.5.
* ``predict_proba(X)`` gives the probabilities (calibrated when the version is), one column
  per entry of ``classes_``, in that order; ``positive_proba(X)`` is the positive column.
* ``classes_`` holds the original label values with their type (e.g. ``[0, 1]`` for an
  integer column, ``['fraud', 'ok']`` for text).
* ``score(X, y)`` is ``1 - normalised expected cost`` at the threshold (1 is perfect, 0 is
  as costly as never flagging), not accuracy.
* ``fit`` does nothing (the model is frozen), so ``clone``, ``cross_val_predict`` and
  ``sklearn.metrics`` work with it as with any fitted classifier.

rareflow's own code uses ``decide(X, scores=None)`` (0/1 as int8), ``threshold``, ``schema``,
``spec`` and ``calibrated``. :func:`tasks.serving.registered_model.load_model` is the short
way in from Python::

    from tasks.serving.registered_model import load_model
    model = load_model("registry", "fraud")          # the champion
    model.predict(batch)                              # decisions at the cost threshold

:func:`from_stored` turns what an older rareflow stored (``ThresholdedModel``) into this
classifier when a version is loaded.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.utils.validation import check_is_fitted

from schemas.errors import ConfigError, RegistryError
from schemas.inference import InputSchema
from tasks.decision.costs import DecisionCosts, normalised

logger = logging.getLogger(__name__)

MODEL_FORMAT = 2  # 1: ThresholdedModel (rareflow <= 0.2); 2: RareflowClassifier
INNER_PREDICT = ("the inner estimator decides at 0.5; use the served classifier's predict "
                 "(cost threshold) or positive_proba")


def decide(scores, threshold) -> np.ndarray:
    """The decision rule, the one place it is written: flag a row when its score (the
    probability of the positive class) is ``>= threshold``. Boolean, shaped as the arguments
    broadcast (a grid of thresholds against the scores gives one row per threshold)."""
    return np.asarray(scores) >= threshold


def positive_scores(estimator, X) -> np.ndarray:
    """Probability of class 1 from a fitted binary classifier."""
    proba = estimator.predict_proba(X)
    classes = list(getattr(estimator, "classes_", [0, 1]))
    return proba[:, classes.index(1)]


class OriginalLabels(ClassifierMixin, BaseEstimator):
    """A fitted 0/1 classifier seen with the data's own label values.

    rareflow fits its models on 0/1 labels (1 = the rare class); this wrapper gives them the
    labels of the training data: ``classes_`` are ``negative`` and ``positive`` in sorted
    order (as scikit-learn's encoders sort them), and ``predict_proba`` has its columns in
    that order. It has no 0.5 ``predict`` of its own.
    """

    def __init__(self, estimator=None, negative=0, positive=1):
        self.estimator = estimator
        self.negative = negative
        self.positive = positive

    def fit(self, X, y):
        """Fit a clone of ``estimator`` on ``y == positive`` (as 0/1)."""
        self.estimator_ = clone(self.estimator).fit(X, (np.asarray(y) == self.positive)
                                                    .astype(np.int8))
        self.classes_ = label_order(self.negative, self.positive)
        return self

    @classmethod
    def from_fitted(cls, estimator, *, negative, positive) -> OriginalLabels:
        """Wrap an estimator already fitted on 0/1 labels."""
        model = cls(estimator, negative=negative, positive=positive)
        model.estimator_ = estimator
        model.classes_ = label_order(negative, positive)
        return model

    def predict_proba(self, X):
        check_is_fitted(self)
        p = positive_scores(self.estimator_, X)
        if self.classes_[0] == self.positive:
            return np.column_stack([p, 1 - p])
        return np.column_stack([1 - p, p])

    def predict(self, X):
        raise AttributeError(INNER_PREDICT)


def label_order(negative, positive) -> np.ndarray:
    """The two label values in scikit-learn's order (sorted; as given if they do not sort)."""
    try:
        values = sorted([negative, positive])
    except TypeError:
        values = [negative, positive]
    mixed = type(negative) is not type(positive) or isinstance(negative, str)
    return np.asarray(values, dtype=object if mixed else None)


class RareflowClassifier(FixedThresholdClassifier):
    """A fitted binary classifier that decides at rareflow's cost-based threshold.

    Args:
        estimator: A fitted classifier, usually ``FrozenEstimator(OriginalLabels(...))``.
        threshold: Decisions are ``P(pos_label) >= threshold`` (required: never 0.5 by
            default).
        pos_label: The rare class's label value.
        schema: The input schema the version enforces on batches.
        spec: The strategy (model family, sampler, weights, calibration) it was trained with.
        fn_cost, fp_cost: The costs the threshold minimised; ``score`` uses them.
        fn_cost_column: With per-row costs, the column of ``X`` holding each row's cost of a
            miss (e.g. the amount); ``score`` then speaks in that money.
    """

    fn_cost_column = None  # versions written before per-row costs were served

    def __init__(self, estimator, *, threshold, pos_label, response_method="predict_proba",
                 schema=None, spec=None, fn_cost=None, fp_cost=None, fn_cost_column=None):
        super().__init__(estimator, threshold=threshold, pos_label=pos_label,
                         response_method=response_method)
        self.schema = schema
        self.spec = spec
        self.fn_cost = fn_cost
        self.fp_cost = fp_cost
        self.fn_cost_column = fn_cost_column

    @property
    def calibrated(self) -> bool:
        """Whether ``predict_proba`` went through a calibration map (a probability)."""
        return bool(getattr(self.spec, "calibrate", False))

    @property
    def model_format(self) -> int:
        return MODEL_FORMAT

    def positive_proba(self, X) -> np.ndarray:
        """The probability of the positive (rare) class, one value per row."""
        proba = self.predict_proba(X)
        return proba[:, int(np.flatnonzero(self.classes_ == self.pos_label)[0])]

    def decide(self, X, scores: np.ndarray | None = None) -> np.ndarray:
        """0/1 (int8) decisions ``positive_proba >= threshold``; ``scores`` saves recomputing."""
        scores = self.positive_proba(X) if scores is None else np.asarray(scores)
        return decide(scores, self.threshold).astype(np.int8)

    @property
    def costs(self) -> DecisionCosts:
        """The costs the threshold minimised (not bound to rows; see ``DecisionCosts.for_rows``).

        Raises:
            ConfigError: the classifier carries no costs.
        """
        if self.fn_cost is None or self.fp_cost is None:
            raise ConfigError("this classifier has no costs (fn_cost, fp_cost): set them with "
                              "set_params or use a metric of sklearn.metrics")
        return DecisionCosts(fn_cost=self.fn_cost, fp_cost=self.fp_cost,
                             fn_cost_column=self.fn_cost_column)

    def score(self, X, y=None, sample_weight=None) -> float:
        """``1 - normalised expected cost`` of ``predict(X)`` against ``y`` (higher is better).

        The normalised cost divides ``fn_cost·FN + fp_cost·FP`` by the cost of never
        flagging anything (``fn_cost`` × positives): 1 is perfect, 0 is no better than never
        flagging, below 0 is worse. With ``fn_cost_column`` each missed positive costs its own
        row's value of that column instead of ``fn_cost`` (money, as the threshold was
        chosen; every row needs its amount, :mod:`tasks.decision.costs`). NaN when ``y`` has
        no positive row (or they cost nothing). This replaces
        scikit-learn's default accuracy, which rewards never flagging a rare class.
        """
        if y is None:
            raise TypeError("score(X, y) is a metric (1 - normalised expected cost); for the "
                            "probability of the positive class use positive_proba(X)")
        costs = self.costs.for_rows(X)  # the missing-amount rule: an amount on every row
        pos = np.asarray(y) == self.pos_label
        flag = self.decide(X).astype(bool)
        w = np.ones(len(pos)) if sample_weight is None else np.asarray(sample_weight, float)
        return 1.0 - normalised(costs.expected(pos, flag, weights=w),
                                costs.never_flag(pos, weights=w))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


def served_classifier(model, *, threshold: float, schema: InputSchema, spec, negative,
                      positive, costs: DecisionCosts | None = None) -> RareflowClassifier:
    """The served classifier around a model fitted on 0/1 labels (1 = ``positive``); it
    keeps ``costs`` as plain attributes (what a pickled version holds)."""
    inner = FrozenEstimator(OriginalLabels.from_fitted(model, negative=negative,
                                                       positive=positive))
    return RareflowClassifier(inner, threshold=float(threshold), pos_label=positive,
                              schema=schema, spec=spec,
                              fn_cost=None if costs is None else costs.fn_cost,
                              fp_cost=None if costs is None else costs.fp_cost,
                              fn_cost_column=None if costs is None else costs.fn_cost_column)


# -- the label values -----------------------------------------------------------------------
def native(value):
    """A NumPy scalar as the plain Python value (JSON- and pickle-friendly)."""
    return value.item() if isinstance(value, np.generic) else value


def class_values(labels: pd.Series | None, y: np.ndarray, schema: InputSchema):
    """(negative, positive) as the values the label column holds, with their type.

    Read from the training rows when the label column is at hand (the first row of each
    class); otherwise parsed back from the schema's text (see :func:`parse_label_text`).
    """
    y = np.asarray(y)
    if labels is not None and len(labels) == len(y) and 0 < y.sum() < len(y):
        values = labels.to_numpy()
        return native(values[np.argmax(y == 0)]), native(values[np.argmax(y == 1)])
    return parse_label_text(schema.negative), parse_label_text(schema.positive)


def parse_label_text(text: str):
    """A label value from its text as the schema stores it: '1' is 1, 'True' is True."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"True": True, "False": False}.get(text, text)


# -- loading, and what older rareflow versions stored ----------------------------------------
class ThresholdedModel:
    """What rareflow up to 0.2 stored: a 0/1 pipeline, its threshold, schema and spec.

    Kept so that those ``model.joblib`` files unpickle; :func:`from_stored` converts one to a
    :class:`RareflowClassifier` when it is loaded.
    """

    def __init__(self, pipeline, threshold: float, schema: InputSchema, spec,
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


def writer(meta: dict) -> str:
    """Which rareflow wrote a version, as its metadata says."""
    if meta.get("rareflow_version"):
        return f"rareflow {meta['rareflow_version']}"
    if meta.get("rareflow_layout"):
        return f"rareflow {meta['rareflow_layout']}"
    return "a rareflow older than 0.3 (it recorded no version)"


def retrain_hint(meta: dict) -> str:
    config = meta.get("config") or {}
    data, label = config.get("data"), config.get("label")
    command = (f"rareflow train --data {data} --label {label} --name {meta.get('name')}"
               if data and label else "rareflow train --data ... --label ...")
    return f"retrain it with this rareflow ({command})"


def from_stored(obj, meta: dict):
    """The served classifier from what a ``model.joblib`` held.

    A :class:`ThresholdedModel` (rareflow up to 0.2) is converted; anything else is returned
    as it is (the registry stores what it is given).

    Raises:
        RegistryError: an old model that cannot be converted; the message names the rareflow
            that wrote it and how to retrain.
    """
    if not isinstance(obj, ThresholdedModel):
        return obj
    try:
        costs = DecisionCosts.from_meta(meta.get("costs")) if meta.get("costs") else None
        classes = meta.get("classes") or [parse_label_text(obj.schema.negative),
                                          parse_label_text(obj.schema.positive)]
        return served_classifier(obj.pipeline, threshold=obj.threshold, schema=obj.schema,
                                 spec=obj.spec, negative=classes[0], positive=classes[1],
                                 costs=costs)
    except (AttributeError, TypeError, ValueError) as exc:
        raise RegistryError(
            f"{meta.get('name')} {meta.get('version')}: its model cannot be converted to the "
            f"served classifier ({type(exc).__name__}: {exc}); it was written by "
            f"{writer(meta)}: {retrain_hint(meta)}") from exc
