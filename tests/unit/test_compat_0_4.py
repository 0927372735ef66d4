"""Versions written by rareflow 0.4 (flat tasks/, signed, champion pointer sealed) keep working.

tests/data/registry-0.4 was written by its make_fixture.py through `rareflow train`, before
tasks/ moved into stage packages: six signed versions (HGB with the fast binning, logistic
regression with SMOTE, a balanced random forest, gradient boosting with under-sampling, an
IsolationForest, and money costs), a sealed champion pointer and a history chain, signed with
the test key beside them. expected_/decisions_<version>.npy hold what that code gave for
batch.parquet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.same_scores import assert_same_scores

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "registry-0.4"
VERSIONS = ["v0001", "v0002", "v0003", "v0004", "v0005", "v0006"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A copy of the 0.4 registry, read with the key it was signed with."""
    from tasks.registry.store import Registry

    root = tmp_path_factory.mktemp("compat04")
    shutil.copytree(FIXTURE / "models", root / "models")
    key = root / "signing.key"
    shutil.copy(FIXTURE / "signing.key", key)
    key.chmod(0o600)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAREFLOW_SIGNING_KEY", raising=False)
        env.delenv("RAREFLOW_SIGNING_KEY_BLOCK", raising=False)
        env.setenv("RAREFLOW_SIGNING_KEY_FILE", str(key))
        yield Registry(root / "models", "compat")


@pytest.mark.parametrize("version", VERSIONS)
def test_04_versions_verify_and_decide_as_they_did(registry, version):
    """Check that each 0.4 version verifies, loads, and gives the same scores and decisions."""
    batch = pd.read_parquet(FIXTURE / "batch.parquet")
    model, meta = registry.load(version)
    assert_same_scores(model.positive_proba(batch), np.load(FIXTURE / f"expected_{version}.npy"))
    np.testing.assert_array_equal(model.decide(batch),
                                  np.load(FIXTURE / f"decisions_{version}.npy"))
    np.testing.assert_array_equal(model.predict(batch),
                                  np.load(FIXTURE / f"decisions_{version}.npy").astype(int))


def test_04_champion_pointer_and_history_still_verify(registry):
    """Check that the sealed champion pointer and the history chain written by 0.4 verify."""
    assert registry.champion()["version"] == "v0006" and registry.resolve("champion") == "v0006"
    history = registry.history()
    assert [(e["action"], e["version"]) for e in history] == [
        ("promote", "v0001"), ("promote", "v0002"), ("promote", "v0003"), ("promote", "v0004"),
        ("register", "v0005"), ("promote", "v0006")]


def test_04_money_version_keeps_its_costs(registry):
    """Check that the version trained with money costs still reads its per-row cost column."""
    model, meta = registry.load("v0006")
    assert meta["costs"]["fn_cost_column"] == "amount"
