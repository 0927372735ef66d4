"""The registry on object storage, each test on S3 (moto's server) and on Azure Blob Storage
(Azurite), both on loopback and real HTTP APIs: versions, the champion pointer's
compare-and-swap, history objects, and what a precondition failure reports."""

from __future__ import annotations

import json

import pytest

from schemas.errors import IntegrityError, RegistryError
from tasks.registry.object_champion import StaleMove
from tasks.registry.object_registry import ObjectRegistry
from tasks.registry.open_registry import open_registry
from tasks.runtime.object_store import open_store

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def tiny_model():
    from sklearn.linear_model import LogisticRegression

    from tasks.decision.served_classifier import RareflowClassifier  # noqa: F401

    return LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


@pytest.fixture
def s3_registry(cloud):
    """A fresh registry root on each cloud (the name is older than the Azure store)."""
    return cloud.new_root()


def test_conditional_writes_on_the_server(s3_registry):
    """Check that the store's put-if-absent and compare-and-swap hold on the server
    (If-None-Match: * and If-Match: <etag> on a put): on S3 the upgrade test of _s3_store."""
    store = open_store(s3_registry)
    assert store.put_if_absent("a.json", b"1")
    assert not store.put_if_absent("a.json", b"2")
    data, tag = store.read_tagged("a.json")
    assert data == b"1"
    assert store.replace_if("a.json", b"3", tag)
    assert not store.replace_if("a.json", b"4", tag)  # the old ETag no longer holds
    assert not store.replace_if("a.json", b"5", None)  # exists: a first write fails
    assert store.read("a.json") == b"3"
    assert store.list() == ["a.json"]
    store.delete("a.json")
    assert store.read_tagged("a.json") is None


def test_register_promote_rollback_history(s3_registry, tiny_model):
    """Check that versions, promotions, rollback and history --at work on S3 as on disk."""
    reg = open_registry(s3_registry, "m")
    assert isinstance(reg, ObjectRegistry)
    v1 = reg.register(tiny_model, {"verdict": {"status": "passed"}}, card="# {version}")
    reg.promote(v1, reason="first")
    v2 = reg.register(tiny_model, {"verdict": {"status": "passed"}})
    moved = reg.promote(v2, reason="second")
    assert reg.version_ids() == [v1, v2] == ["v0001", "v0002"]
    assert reg.champion()["version"] == v2
    model, meta = reg.load("champion")
    assert meta["version"] == v2 and hasattr(model, "predict")
    reg.rollback(reason="bad")
    fresh = open_registry(s3_registry, "m")  # another process's view
    assert fresh.champion()["version"] == v1
    assert [h["action"] for h in fresh.history()] == ["promote", "promote", "rollback"]
    assert fresh.served_at(moved["at"])["version"] in (v2, v1)
    table = fresh.summaries().set_index("version")
    assert list(table["signature"]) == ["ok", "ok"]
    assert table.loc[v1, "champion"] == "*"


def test_tampered_object_is_refused(s3_registry, cloud, tiny_model):
    """Check that a model.joblib replaced on the server is refused before unpickling."""
    reg = open_registry(s3_registry, "m")
    v1 = reg.register(tiny_model, {"verdict": {"status": "passed"}})
    cloud.put(s3_registry, f"m/versions/{v1}/model.joblib", b"not a model")
    with pytest.raises(IntegrityError, match="model.joblib"):
        reg.load(v1)


def test_precondition_failure_on_the_pointer_is_stale(s3_registry, tiny_model):
    """Check that a champion move whose pointer changed since it was read is reported stale,
    writes nothing, and loses nothing of the move that won."""
    a, b = open_registry(s3_registry, "m"), open_registry(s3_registry, "m")
    v1 = a.register(tiny_model, {"verdict": {"status": "passed"}})
    v2 = a.register(tiny_model, {"verdict": {"status": "passed"}})
    assert a.champion() is None and b.champion() is None  # both read the (absent) pointer
    b.log.move(v2, action="promote", reason="b", forced=False, name="m", status="passed")
    with pytest.raises(StaleMove, match="stale"):
        a.log.move(v1, action="promote", reason="a", forced=False, name="m", status="passed")
    fresh = open_registry(s3_registry, "m")
    assert fresh.champion()["version"] == v2
    assert [(h["action"], h["version"]) for h in fresh.history()] == [("promote", v2)]


def test_publish_after_a_lost_swap_is_recorded_stale(s3_registry, tiny_model, monkeypatch):
    """Check that a candidate whose pointer swap fails during publish is registered, listed
    as stale (a history record), and the champion is the other run's."""
    a, b = open_registry(s3_registry, "m"), open_registry(s3_registry, "m")
    v1 = b.register(tiny_model, {"verdict": {"status": "passed"}})
    real_assemble = ObjectRegistry._assemble

    def assemble_then_other_promotes(self, *args, **kwargs):
        real_assemble(self, *args, **kwargs)
        b.champion()
        b.log.move(v1, action="promote", reason="b", forced=False, name="m", status="passed")

    monkeypatch.setattr(ObjectRegistry, "_assemble", assemble_then_other_promotes)
    published = a.publish(tiny_model, {"verdict": {"status": "passed"}}, compared_with=None,
                          promote_reason="passed every gate")
    assert published.status == "stale" and published.champion == v1
    status = a.summaries().set_index("version")["status"].to_dict()
    assert status == {v1: "passed", published.version: "stale"}


def test_history_objects_chain_and_forgery_is_skipped(s3_registry, cloud, tiny_model):
    """Check that history is one object per event, chained: a forged object is skipped."""
    reg = open_registry(s3_registry, "m")
    v1 = reg.register(tiny_model, {"verdict": {"status": "passed"}})
    reg.promote(v1, reason="first")
    assert cloud.keys(s3_registry, "m/history/") == ["m/history/0000000001.json"]
    forged = {"action": "promote", "version": "v0009", "event_id": "x", "at": "2026-01-01"}
    cloud.put(s3_registry, "m/history/0000000002.json", json.dumps(forged).encode())
    assert [h["version"] for h in open_registry(s3_registry, "m").history()] == [v1]


def test_missing_version_named(s3_registry):
    """Check that asking for a version that is not there names the registry's versions."""
    with pytest.raises(RegistryError, match="no version 'v0003'"):
        open_registry(s3_registry, "m").metadata("v0003")
