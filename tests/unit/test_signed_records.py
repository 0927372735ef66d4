"""What decides which model is served is signed: the champion pointer, history, monitoring
state and the registry's identity (tasks/registry/signed_records.py), and a legacy registry upgrades
in place with `rareflow models sign`."""

from __future__ import annotations

import json
import shutil

import pytest
import registry_entries
from registry_entries import models_cli

from schemas.errors import IntegrityError
from schemas.statuses import NO_DRIFT
from tasks.registry import signing
from tasks.registry.monitor_state import read_state, record_check
from tasks.registry.signed_records import IDENTITY_FILE
from tasks.registry.store import Registry

KEY = signing.SigningKey(b"k" * 40, "test")


@pytest.fixture
def reg(reg, monkeypatch) -> Registry:
    """The unit layer's empty registry, signed with this module's known key."""
    monkeypatch.setenv(signing.KEY_ENV, KEY.secret.decode())
    return Registry(reg.root, reg.name)


def add(reg: Registry, status="passed", value=1) -> str:
    return registry_entries.add(reg, value, {"verdict": {"status": status}})




def test_a_new_registry_signs_its_records(reg):
    """Check that a new registry gets a signed identity, and its pointer and every history
    entry carry a MAC chained to the one before."""
    v1 = add(reg)
    reg.promote(v1, reason="first")
    reg.promote(add(reg), reason="second")
    assert (reg.root / IDENTITY_FILE).is_file() and reg.trust.enforced
    pointer = json.loads(reg.champion_path.read_text())
    assert pointer["mac"] and pointer["seq"] == 2 and pointer["prev"]
    entries = [json.loads(line) for line in reg.history_path.read_text().splitlines()]
    assert all(e["mac"] for e in entries)
    assert [e["prev_mac"] for e in entries[1:]] == [e["mac"] for e in entries[:-1]]


def test_an_edited_pointer_is_refused_never_served(reg):
    """Check that champion.json edited to name a rejected version is refused (exit 6 from
    the CLI), and the rejected version is never loaded as champion."""
    v1, rejected = add(reg), add(reg, status="rejected")
    reg.promote(v1, reason="first")
    pointer = json.loads(reg.champion_path.read_text())
    reg.champion_path.write_text(json.dumps({**pointer, "version": rejected}))
    with pytest.raises(IntegrityError, match="champion.json does not match its signature"):
        reg.load("champion")
    code, out = models_cli(reg, "show")
    assert code == 6 and "does not match its signature" in out


def test_a_replayed_old_pointer_is_refused(reg):
    """Check that putting back an earlier (validly signed) champion.json is refused once
    history has moved the champion since."""
    v1, v2 = add(reg), add(reg)
    reg.promote(v1, reason="first")
    old = reg.champion_path.read_bytes()
    reg.promote(v2, reason="second")
    reg.champion_path.write_bytes(old)
    with pytest.raises(IntegrityError, match="history moved the champion since"):
        reg.champion()


def test_a_forged_history_line_does_not_steer_rollback(reg, caplog):
    """Check that a forged champion line in history is skipped by its line number, so
    `models rollback` (without --force) goes back to the real previous champion, never to a
    rejected version."""
    v1, rejected, v3 = add(reg), add(reg, status="rejected"), add(reg)
    reg.promote(v1, reason="first")
    reg.promote(v3, reason="third")
    lines = reg.history_path.read_text().splitlines()
    forged = {**json.loads(lines[-1]), "version": rejected, "event_id": "f" * 32}
    lines.insert(len(lines) - 1, json.dumps(forged))
    reg.history_path.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        assert rejected not in reg.champion_stack()
    assert f"line {len(lines) - 1} is not signed with the registry's key" in caplog.text
    code, out = models_cli(reg, "rollback", "--reason", "v3 misbehaves")
    assert code == 0, out
    assert reg.champion()["version"] == v1


def test_monitoring_state_edits_are_refused(reg):
    """Check that monitor_state.json edited to silence alarms (checked_until in 2099) is
    refused with what to do."""
    add(reg)
    result = {"decision": {"status": NO_DRIFT}, "as_of": "2026-01-01T00:00:00+00:00",
              "version": "v0001", "status": NO_DRIFT, "since": None, "matured_rows": 10,
              "batch": {"positives": 3}, "name": reg.name}
    record_check(reg.dir, result, lock=reg.lock, trust=reg.trust)
    assert read_state(reg.dir, trust=reg.trust)["checked_until"].startswith("2026")
    path = reg.dir / "monitor_state.json"
    path.write_text(path.read_text().replace("2026-01-01", "2099-01-01"))
    with pytest.raises(IntegrityError, match="monitoring state .* does not match its "
                                             "signature .* delete it to judge every matured"):
        read_state(reg.dir, trust=reg.trust)


def test_a_version_from_another_registry_is_refused(reg, tmp_path):
    """Check that a version signed with the same key in another registry, copied in, is
    refused: its signature covers the other registry's identity."""
    add(reg)
    other = Registry(tmp_path / "elsewhere", "fraud")
    add(other, value=666)
    shutil.rmtree(reg.version_dir("v0001"))
    shutil.copytree(other.version_dir("v0001"), reg.version_dir("v0001"))
    with pytest.raises(IntegrityError, match="was made for another registry"):
        reg.load("v0001")


def test_a_legacy_registry_upgrades_in_place(reg, tmp_path):
    """Check that a registry written before identities (no identity, records unsigned) is
    read as before, and `rareflow models sign` signs it in place, says what it signed, and
    leaves the same champion and history, now verified."""
    v1, v2 = add(reg), add(reg)
    reg.promote(v1, reason="first")
    reg.promote(v2, reason="second")
    record_check(reg.dir, {"decision": {"status": NO_DRIFT}, "as_of": "2026-01-01", "name":
                           reg.name, "version": v2, "status": NO_DRIFT, "since": None,
                           "matured_rows": 1, "batch": {"positives": 1}},
                 lock=reg.lock, trust=reg.trust)
    _make_legacy(reg)
    legacy = Registry(reg.root, reg.name)
    assert not legacy.trust.enforced and legacy.champion()["version"] == v2
    code, out = models_cli(legacy, "sign")
    assert code == 0, out
    for said in ("identity", f"{v1}, {v2}: signed for this registry", "history: 2 entries",
                 f"champion pointer ({v2}): signed", "monitoring state: signed"):
        assert said in out
    upgraded = Registry(reg.root, reg.name)
    assert upgraded.trust.enforced and upgraded.champion()["version"] == v2
    assert upgraded.champion_stack() == [v1, v2] and upgraded.load(v1)[0].value == 1
    assert read_state(upgraded.dir, trust=upgraded.trust)["checks"]
    assert models_cli(upgraded, "sign")[0] == 0  # nothing left to upgrade


def _make_legacy(reg: Registry) -> None:
    """Turn a registry into what releases before identities wrote: no identity file,
    version signatures without it, pointer/history/state without MACs."""
    (reg.root / IDENTITY_FILE).unlink()
    for version in reg.version_ids():
        path = reg.version_dir(version) / signing.SIGNATURE_FILE
        doc = json.loads(path.read_text())
        path.write_text(json.dumps(signing.sign(KEY, name=reg.name, version=version,
                                                files=doc["files"])))
    strip = ("mac", "prev_mac", "seq", "prev")
    pointer = json.loads(reg.champion_path.read_text())
    pointer = {k: v for k, v in pointer.items() if k not in strip}
    pointer["history_entry"] = {k: v for k, v in pointer["history_entry"].items()
                                if k not in strip}
    reg.champion_path.write_text(json.dumps(pointer))
    lines = [json.loads(line) for line in reg.history_path.read_text().splitlines()]
    reg.history_path.write_text("".join(
        json.dumps({k: v for k, v in e.items() if k not in strip}) + "\n" for e in lines))
    state = reg.dir / "monitor_state.json"
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items()
                                 if k != "mac"}))


def test_compare_refuses_edited_metadata(reg):
    """Check that `models compare` refuses a version whose metadata was edited (threshold
    0.99) instead of showing it."""
    v1, v2 = add(reg), add(reg)
    path = reg.version_dir(v2) / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "threshold": 0.99}))
    code, out = models_cli(reg, "compare", v1, v2)
    assert code == 6 and "metadata.json does not match its signed sha256" in out
