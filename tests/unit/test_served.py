"""The served classifier (tasks/decision/served_classifier.py): a scikit-learn classifier
deciding at the cost threshold, with the data's own labels, that composes with sklearn and loads
from the registry."""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import confusion_matrix, recall_score
from sklearn.model_selection import FixedThresholdClassifier, cross_val_predict

from schemas.config import Costs
from schemas.errors import DataError, RegistryError
from schemas.inference import infer_input_schema
from tasks.decision.costs import DecisionCosts
from tasks.decision.served_classifier import (
    RareflowClassifier,
    ThresholdedModel,
    class_values,
    from_stored,
    parse_label_text,
)
from tasks.judge.metrics import metrics_at
from tasks.registry.store import Registry
from tasks.registry.versions import load_stored
from tasks.search.candidates import CandidateSpec
from tasks.search.final_fit import fit_final
from tasks.serving.registered_model import load_model

COSTS = DecisionCosts.from_config(Costs(fn_cost=20, fp_cost=1))


def frame(labels: tuple, seed: int = 0):
    """300 rows, 10 % positives, with the label column holding ``labels`` (negative, positive)."""
    X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0,
                               weights=[0.9], random_state=seed)
    df = pd.DataFrame(X[:, :3], columns=["a", "b", "c"])
    df["kind"] = np.where(X[:, 3] > 0, "x", "y")
    df["label"] = np.where(y == 1, labels[1], labels[0])
    return df, y


def fitted(labels=("ok", "fraud"), *, threshold=0.12, spec=None):
    df, y = frame(labels)
    schema = infer_input_schema(df, label="label", positive=str(labels[1]),
                                negative=str(labels[0]))
    result = fit_final(spec or CandidateSpec("logreg", "none", "balanced"), df, y, schema,
                       threshold=threshold, seed=0, costs=COSTS)
    return result.model, df, y


def test_served_model_is_a_fixed_threshold_classifier_with_the_datas_labels():
    """Check that the served model is sklearn's FixedThresholdClassifier shape with the
    original label values, probabilities in classes_ order and decisions at the threshold."""
    model, df, y = fitted(("ok", "fraud"))
    assert isinstance(model, FixedThresholdClassifier)
    assert isinstance(model.estimator, FrozenEstimator)
    assert list(model.classes_) == ["fraud", "ok"]  # sorted, as sklearn's encoders sort
    proba = model.predict_proba(df)
    assert proba.shape == (len(df), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba[:, 0], model.positive_proba(df))
    expected = np.where(model.positive_proba(df) >= 0.12, "fraud", "ok")
    np.testing.assert_array_equal(model.predict(df), expected)
    np.testing.assert_array_equal(model.predict(df) == "fraud", model.decide(df) == 1)
    assert model.decide(df).dtype == np.int8


@pytest.mark.parametrize("labels, classes", [
    ((0, 1), [0, 1]),
    ((False, True), [False, True]),
    (("no", "yes"), ["no", "yes"]),
    ((-1, 1), [-1, 1]),
])
def test_classes_keep_the_label_type(labels, classes):
    """Check that classes_ and predict hold the label column's own values and types."""
    model, df, _ = fitted(labels)
    assert list(model.classes_) == classes
    assert type(model.classes_[0].item() if hasattr(model.classes_[0], "item")
                else model.classes_[0]) is type(classes[0])
    assert set(np.unique(model.predict(df))) <= set(classes)
    assert model.pos_label == labels[1]


def test_the_cost_threshold_is_not_half():
    """Check that predict flags what the cost threshold flags, not what 0.5 would."""
    model, df, y = fitted((0, 1), threshold=0.12)
    p = model.positive_proba(df)
    assert (model.predict(df) == 1).sum() == (p >= 0.12).sum()
    assert (p >= 0.12).sum() > (p >= 0.5).sum()


def test_get_set_params_and_clone():
    """Check that get_params/set_params/clone work and a clone predicts the same without fit."""
    model, df, _ = fitted()
    params = model.get_params(deep=False)
    assert params["threshold"] == 0.12 and params["pos_label"] == "fraud"
    assert params["fn_cost"] == 20 and params["schema"] == model.schema
    copy = clone(model)
    assert copy is not model
    np.testing.assert_array_equal(copy.predict(df), model.predict(df))
    np.testing.assert_array_equal(copy.positive_proba(df), model.positive_proba(df))
    copy.set_params(threshold=0.9)
    assert (copy.predict(df) == "fraud").sum() < (model.predict(df) == "fraud").sum()
    np.testing.assert_array_equal(copy.decide(df) == 1, copy.predict(df) == "fraud")


def test_composes_with_sklearn_metrics_and_cross_val_predict():
    """Check that sklearn metrics read its predictions and cross_val_predict never refits it."""
    model, df, y = fitted()
    labels = df["label"]
    pred = model.predict(df)
    recall = recall_score(labels, pred, pos_label="fraud")
    assert recall == pytest.approx(((model.decide(df) == 1) & (y == 1)).sum() / y.sum())
    assert confusion_matrix(labels, pred, labels=["ok", "fraud"]).sum() == len(df)
    np.testing.assert_array_equal(cross_val_predict(model, df, labels, cv=3), pred)
    np.testing.assert_allclose(cross_val_predict(model, df, labels, cv=3,
                                                 method="predict_proba"),
                               model.predict_proba(df))
    refit = clone(model).fit(df, labels)  # frozen: fit changes nothing
    np.testing.assert_array_equal(refit.predict(df), pred)


def test_score_is_one_minus_normalised_cost():
    """Check that score(X, y) is 1 - normalised expected cost, not accuracy."""
    model, df, y = fitted()
    figures = metrics_at(y, model.positive_proba(df), 0.12,
                         costs=DecisionCosts(fn_cost=20, fp_cost=1))
    assert model.score(df, df["label"]) == pytest.approx(1 - figures["normalised_cost"])
    with pytest.raises(TypeError, match="positive_proba"):
        model.score(df)
    assert np.isnan(model.score(df.iloc[:3][y[:3] == 0], df["label"].iloc[:3][y[:3] == 0]))


def test_score_with_per_row_costs_speaks_in_money():
    """Check that a version trained on per-row miss costs scores in that money: each missed
    positive costs its row's amount (brute force), and the column must be there."""
    model, df, y = fitted()
    df = df.assign(c=df["c"].abs() * 100)  # the amount at stake in each row
    money = model.set_params(fn_cost_column="c")
    assert clone(money).get_params()["fn_cost_column"] == "c"
    flag = money.decide(df).astype(bool)
    pos, amount = y.astype(bool), df["c"].to_numpy()
    cost = amount[pos & ~flag].sum() + 1 * (~pos & flag).sum()
    assert money.score(df, df["label"]) == pytest.approx(1 - cost / amount[pos].sum())
    with pytest.raises(DataError, match="cost column 'label'.* missing"):  # not in these rows
        money.set_params(fn_cost_column="label").score(df.drop(columns="label"), y)
    money.set_params(fn_cost_column="c")
    del money.__dict__["fn_cost_column"]  # as unpickled from a version written before
    assert money.get_params()["fn_cost_column"] is None


def test_inner_estimator_does_not_decide_at_half():
    """Check that the wrapped estimator has no 0.5 predict to reach for by accident."""
    model, df, _ = fitted()
    with pytest.raises(AttributeError, match="cost threshold"):
        model.estimator.predict(df)


def test_pickles_and_registry_round_trip(tmp_path):
    """Check that the model pickles, registers and loads (also through load_model and a bare
    joblib.load) as the same classifier."""
    model, df, _ = fitted()
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(df), model.predict(df))
    reg = Registry(tmp_path, "fraud")
    version = reg.register(model, {"verdict": {"status": "passed"}})
    reg.promote(version, reason="test")
    for loaded in (reg.load(version)[0], load_model(tmp_path, "fraud"),
                   joblib.load(reg.version_dir(version) / "model.joblib")):
        assert isinstance(loaded, RareflowClassifier)
        np.testing.assert_array_equal(loaded.predict(df), model.predict(df))


def test_old_thresholded_model_is_converted():
    """Check that what rareflow 0.2 stored becomes the served classifier deciding the same."""
    model, df, _ = fitted((0, 1))
    old = ThresholdedModel(model.estimator.estimator.estimator_, 0.12, model.schema, model.spec)
    served = from_stored(old, {"costs": {"fn_cost": 20.0, "fp_cost": 1.0}})
    assert isinstance(served, RareflowClassifier) and list(served.classes_) == [0, 1]
    np.testing.assert_array_equal(served.predict(df), model.predict(df))
    assert served.fn_cost == 20.0


def test_unloadable_model_file_names_its_writer(tmp_path):
    """Check that a model file naming a class this rareflow lacks gets a one-line message
    with the version that wrote it and how to retrain."""
    path = tmp_path / "model.joblib"
    path.write_bytes(b"ctasks.gone_module\nGoneModel\n)\x81.")
    meta = {"name": "fraud", "version": "v0007", "rareflow_version": "0.0.9",
            "config": {"data": "data.csv", "label": "is_fraud"}}
    with pytest.raises(RegistryError, match=r"written by rareflow 0\.0\.9.*rareflow train "
                                            r"--data data\.csv --label is_fraud"):
        load_stored(path, meta)


@pytest.mark.parametrize("text, value", [("1", 1), ("0", 0), ("-1", -1), ("True", True),
                                         ("False", False), ("fraud", "fraud"), ("1.5", "1.5")])
def test_parse_label_text(text, value):
    """Check that label text stored by older versions is read back as the likely value."""
    assert parse_label_text(text) == value and type(parse_label_text(text)) is type(value)


def test_class_values_without_the_label_column_use_the_schema():
    """Check that without the label column the classes come from the schema's text."""
    df, y = frame((0, 1))
    schema = infer_input_schema(df, label="label", positive="1", negative="0")
    assert class_values(None, y, schema) == (0, 1)
    assert class_values(df["label"], y, schema) == (0, 1)
