"""Versions registered by rareflow 0.1 (classes in tasks.models) keep loading and scoring.

tests/data/registry-0.1 was written at commit 9c70932 by its make_fixture.py: an HGB bag with
a calibration map, gradient boosting with class weights as sample weights, an IsolationForest,
SMOTE + logistic regression and a calibrated blend; expected_<version>.npy holds the scores
that code gave for batch.parquet.

Those versions are unsigned: they load after `rareflow models sign` (``sign_unsigned``) or,
without signing, only with the documented opt-in ``RAREFLOW_ALLOW_UNSIGNED=1``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas.errors import IntegrityError
from schemas.inference import InputSchema
from tasks.decision.served_classifier import RareflowClassifier
from tasks.registry.sign_existing import sign_unsigned
from tasks.registry.signing import ALLOW_UNSIGNED_ENV
from tasks.registry.store import Registry
from tests.same_scores import assert_same_scores

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "registry-0.1"


@pytest.fixture(scope="module")
def old_registry(tmp_path_factory):
    """A copy of the 0.1 registry, signed with `rareflow models sign` (sign_unsigned)."""
    root = tmp_path_factory.mktemp("old") / "registry"
    shutil.copytree(FIXTURE, root)
    reg = Registry(root, "old")
    assert sign_unsigned(reg) == [(v, "signed") for v in reg.version_ids()]
    return reg


@pytest.fixture
def unsigned_registry(tmp_path):
    root = tmp_path / "registry"
    shutil.copytree(FIXTURE, root)
    return Registry(root, "old")


@pytest.mark.parametrize("version", ["v0001", "v0002", "v0003", "v0004", "v0005"])
def test_old_versions_score_as_they_did(old_registry, version):
    """Check that each 0.1 version loads and gives exactly the scores it gave then."""
    batch = pd.read_parquet(FIXTURE / "batch.parquet")
    model, meta = old_registry.load(version)
    expected = np.load(FIXTURE / f"expected_{version}.npy")
    assert_same_scores(model.positive_proba(batch), expected)
    np.testing.assert_array_equal(model.decide(batch),
                                  (expected >= meta["threshold"]).astype(np.int8))


@pytest.mark.parametrize("version", ["v0001", "v0002", "v0003", "v0004", "v0005"])
def test_old_versions_load_as_the_served_classifier(old_registry, version):
    """Check that each 0.1 version loads as the scikit-learn classifier whose predict decides
    at the version's threshold, with the labels read back as integers."""
    batch = pd.read_parquet(FIXTURE / "batch.parquet")
    model, meta = old_registry.load(version)
    expected = np.load(FIXTURE / f"expected_{version}.npy")
    assert isinstance(model, RareflowClassifier)
    assert list(model.classes_) == [0, 1] and model.threshold == meta["threshold"]
    np.testing.assert_array_equal(model.predict(batch),
                                  (expected >= meta["threshold"]).astype(int))
    np.testing.assert_allclose(model.predict_proba(batch)[:, 1], expected)


def test_old_schema_is_a_whole_pydantic_model(old_registry):
    """Check that an input schema pickled the 0.1 way works like a new one (pydantic's
    field set is rebuilt, so dumps that depend on it work)."""
    model, meta = old_registry.load("v0001")
    assert isinstance(model.schema, InputSchema)
    assert model.schema.model_dump(exclude_unset=True)["label"] == "is_fraud"
    assert model.schema == InputSchema.model_validate(meta["schema"])


def test_unsigned_old_versions_need_the_opt_in(unsigned_registry, monkeypatch, caplog):
    """Check that an unsigned 0.1 version is refused by default, and loads (with a warning
    and its sha256 checked) under RAREFLOW_ALLOW_UNSIGNED=1."""
    with pytest.raises(IntegrityError, match="no signature.json.*RAREFLOW_ALLOW_UNSIGNED"):
        unsigned_registry.load("v0002")
    monkeypatch.setenv(ALLOW_UNSIGNED_ENV, "1")
    batch = pd.read_parquet(FIXTURE / "batch.parquet")
    model, _ = unsigned_registry.load("v0002")
    assert_same_scores(model.positive_proba(batch), np.load(FIXTURE / "expected_v0002.npy"))
    assert "v0002 is unsigned" in caplog.text
    path = unsigned_registry.version_dir("v0002") / "model.joblib"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="model.joblib does not match"):
        unsigned_registry.load("v0002")


def test_signing_refuses_a_changed_old_version(unsigned_registry):
    """Check that `models sign` does not sign a version whose files fail their sha256."""
    path = unsigned_registry.version_dir("v0003") / "model.joblib"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match="v0003: model.joblib does not match"):
        sign_unsigned(unsigned_registry)
