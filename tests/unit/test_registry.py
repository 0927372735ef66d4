"""The registry: safe names, integrity checks, stray files, champion and history semantics."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from registry_entries import FAILED, PASSED, add

from schemas.errors import IntegrityError, RegistryError
from tasks.registry.signed_records import seal_entry
from tasks.registry.store import (
    CARD_FILE,
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    Registry,
    check_version_id,
)


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- names and version ids -------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "../escape", "..", ".", "/abs/path", "a/b", "a\\b", "", " lead", "trail\n", ".hidden",
    "a..b", "x" * 65, "naïve", "a b", "~root", "-flag", "nul\x00byte", None, 3,
])
def test_unsafe_model_names_are_refused(tmp_path, name):
    """Check that a model name that could leave the registry folder is refused."""
    with pytest.raises(RegistryError, match="model name must be"):
        Registry(tmp_path, name)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["fraud", "fraud-v2", "a.b_c", "M0", "x" * 64])
def test_safe_model_names_stay_inside_the_root(tmp_path, name):
    """Check that an allowed name maps to one folder directly under the root."""
    reg = Registry(tmp_path, name)
    assert reg.dir.parent == tmp_path and reg.dir.name == name


@pytest.mark.parametrize("version", [
    "../v0001", "v0001/../../x", "/etc/passwd", "v1", "v001", "V0001", "v0001\n", "v0001 ",
    "champion/..", "", "v0001/model.joblib", "v" + "1" * 10, None, 1,
])
def test_unsafe_version_ids_are_refused(reg, version):
    """Check that a version id that is not 'v' and 4-9 digits is refused everywhere."""
    add(reg)
    with pytest.raises(RegistryError, match="version id must look like"):
        check_version_id(version)
    with pytest.raises(RegistryError):
        reg.version_dir(version)
    for method in (reg.resolve, reg.metadata, reg.load, reg.reference):
        with pytest.raises(RegistryError):
            method(version)
    with pytest.raises(RegistryError):
        reg.promote(version, reason="attack")
    assert reg.champion() is None


def test_unknown_version_names_the_versions_there(reg):
    """Check that asking for a missing version lists the versions that exist."""
    add(reg)
    with pytest.raises(RegistryError, match=r"no version 'v0042'.*v0001"):
        reg.resolve("v0042")
    with pytest.raises(RegistryError, match="no champion yet"):
        reg.resolve("champion")


# -- integrity -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["append", "truncate", "replace", "delete"])
def test_tampered_model_is_refused_at_load(reg, damage):
    """Check that a changed, truncated, replaced or missing model.joblib is never unpickled."""
    version = add(reg)
    path = reg.version_dir(version) / MODEL_FILE
    data = path.read_bytes()
    if damage == "append":
        path.write_bytes(data + b"\x00")
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "replace":
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        path.unlink()
    with pytest.raises(IntegrityError, match=MODEL_FILE):
        reg.load(version)


def test_tampered_reference_and_metadata_are_refused(reg):
    """Check that a changed reference table or unreadable metadata raise IntegrityError."""
    version = add(reg)
    folder = reg.version_dir(version)
    ref = folder / REFERENCE_FILE
    ref.write_bytes(ref.read_bytes() + b"x")
    with pytest.raises(IntegrityError, match=REFERENCE_FILE):
        reg.reference(version)
    (folder / METADATA_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(IntegrityError, match="corrupt"):
        reg.metadata(version)


def test_corrupt_champion_pointer_is_an_integrity_error(reg):
    """Check that a hand-damaged champion.json is reported, not silently ignored."""
    reg.promote(add(reg), reason="first")
    reg.champion_path.write_text('{"version": "v00', encoding="utf-8")
    with pytest.raises(IntegrityError, match="champion.json"):
        reg.champion()


def test_load_returns_the_model_with_its_metadata(reg):
    """Check that a version loads after its checksum is verified, with its metadata."""
    version = add(reg, value=42)
    model, meta = reg.load(version)
    assert model.value == 42 and meta["version"] == version
    assert {MODEL_FILE, REFERENCE_FILE} == set(meta["files"])
    assert (reg.version_dir(version) / CARD_FILE).read_text() == f"# {version}\n"
    assert (reg.version_dir(version) / "reports").is_dir()


# -- stray files -----------------------------------------------------------------------------
def test_unexpected_files_in_the_registry_are_tolerated(reg):
    """Check that stray files and half-made folders are ignored and never overwritten."""
    first = add(reg)
    reg.promote(first, reason="first")
    versions = reg.versions_dir
    (versions / "README.txt").write_text("notes")
    (versions / "v0002").write_text("a file named like a version")
    (versions / "v0003").mkdir()  # a folder without metadata: incomplete
    (versions / "v0003" / "junk.bin").write_bytes(b"\x00")
    (versions / "vfoo").mkdir()
    (versions / ".DS_Store").write_bytes(b"\x00\x01")
    (reg.dir / "notes.md").write_text("hello")
    (reg.dir / "champion.json.bak").write_text("{broken")
    (reg.root / "stray.txt").write_text("at the root")
    assert reg.version_ids() == ["v0001"]
    assert list(reg.summaries()["version"]) == ["v0001"]
    second = add(reg, value=2)
    assert second == "v0004"  # past every version-like name, never onto one
    assert (versions / "v0002").read_text() == "a file named like a version"
    assert (versions / "v0003" / "junk.bin").is_file()
    assert reg.version_ids() == ["v0001", "v0004"]
    reg.promote(second, reason="second")
    assert reg.load("champion")[0].value == 2
    assert reg.resolve("latest") == "v0004"
    reg.rollback()
    assert reg.champion()["version"] == "v0001"


def test_leftovers_of_dead_writers_are_cleaned_by_the_next_lock_holder(reg):
    """Check that the next locked write removes hidden leftovers, whatever process id their
    name holds: staging only happens under the lock, so a leftover's writer is gone."""
    add(reg)
    for name in (".tmp-999999999-abc", f".tmp-{os.getpid()}-def", ".tmp-otherhost-1"):
        (reg.versions_dir / name).mkdir()
        (reg.versions_dir / name / MODEL_FILE).write_bytes(b"half")
    pointer_tmp = reg.dir / ".champion.json.x1y2.tmp"
    pointer_tmp.write_text("{")
    assert reg.version_ids() == ["v0001"]
    reg.promote("v0001", reason="first")
    assert not list(reg.versions_dir.glob(".tmp-*")) and not pointer_tmp.exists()


def test_versions_are_staged_under_the_lock(reg, monkeypatch):
    """Check that a version's files are written while the registry's lock is held, so no
    other process can mistake them for a dead writer's leftovers."""
    import filelock

    import tasks.registry.store as registry_module

    real = registry_module.write_files
    held = []

    def probe(folder, **kwargs):
        try:
            filelock.FileLock(reg.dir / ".lock").acquire(timeout=0)
        except filelock.Timeout:
            held.append(True)
        return real(folder, **kwargs)

    monkeypatch.setattr(registry_module, "write_files", probe)
    assert add(reg) == "v0001" and held == [True]


def test_failed_register_leaves_nothing(reg):
    """Check that a model that cannot be pickled leaves no version and no staging folder."""
    with pytest.raises(Exception, match="(?i)pickle|lambda"):
        reg.register(lambda x: x, dict(PASSED))
    assert reg.version_ids() == []
    assert not list(reg.versions_dir.glob(".tmp-*"))


# -- champion, history and rollback ----------------------------------------------------------
def test_versions_are_numbered_and_immutable(reg):
    """Check that versions count up and an earlier version is untouched by later ones."""
    first = add(reg, value=1)
    before = {p.name: p.read_bytes() for p in reg.version_dir(first).iterdir() if p.is_file()}
    assert [add(reg, value=v) for v in (2, 3)] == ["v0002", "v0003"]
    after = {p.name: p.read_bytes() for p in reg.version_dir(first).iterdir() if p.is_file()}
    assert before == after
    assert reg.resolve("latest") == "v0003"


def test_promotions_and_rollbacks_are_recorded_in_order(reg):
    """Check that each promotion and rollback is one history entry and moves the champion."""
    v1, v2, v3 = (add(reg, value=i) for i in (1, 2, 3))
    reg.promote(v1, reason="one")
    reg.promote(v2, reason="two")
    reg.promote(v3, reason="three")
    assert reg.champion_stack() == [v1, v2, v3]
    entry = reg.rollback(reason="v3 misbehaves")
    assert (entry["version"], entry["previous"], entry["action"]) == (v2, v3, "rollback")
    assert reg.champion()["version"] == v2
    reg.rollback()
    assert reg.champion()["version"] == v1
    with pytest.raises(RegistryError, match="no earlier champion"):
        reg.rollback()
    history = reg.history()
    assert [(h["action"], h["version"], h["previous"]) for h in history] == [
        ("promote", v1, None), ("promote", v2, v1), ("promote", v3, v2),
        ("rollback", v2, v3), ("rollback", v1, v2)]
    assert len({h["event_id"] for h in history}) == len(history)
    assert reg.champion()["event_id"] == history[-1]["event_id"]


def test_rollback_without_champion_is_refused(reg):
    """Check that rolling back with no champion, or only one, is a clear registry error."""
    with pytest.raises(RegistryError, match="no champion to roll back"):
        reg.rollback()
    reg.promote(add(reg), reason="only one")
    with pytest.raises(RegistryError, match="no earlier champion"):
        reg.rollback()


def test_failed_gates_block_promotion_unless_forced(reg):
    """Check that a version whose gates failed is refused, and a forced one is recorded."""
    good, bad = add(reg), add(reg, meta=FAILED)
    reg.promote(good, reason="good")
    before = reg.champion_path.read_bytes()
    with pytest.raises(RegistryError, match="did not pass its gates"):
        reg.promote(bad, reason="try")
    assert reg.champion_path.read_bytes() == before
    assert len(reg.log.moves()) == 1  # the refused promotion moved nothing
    entry = reg.promote(bad, reason="on call decided", forced=True)
    assert entry["forced"] is True and reg.history()[-1]["forced"] is True
    assert reg.champion()["version"] == bad


def test_champion_pointer_is_replaced_without_leftovers(reg):
    """Check that champion.json is always whole JSON and no temporary file stays beside it."""
    for value in range(3):
        reg.promote(add(reg, value=value), reason="again")
        assert json.loads(reg.champion_path.read_text())["version"] == reg.version_ids()[-1]
    assert sorted(p.name for p in reg.dir.iterdir()) == [
        ".lock", "champion.json", "history.jsonl", "versions"]


def test_interrupted_promotion_is_finished_once(reg):
    """Check that a champion written without its history entry is recorded by the next writer."""
    v1, v2 = add(reg), add(reg)
    reg.promote(v1, reason="one")
    entry = {"event_id": "e" * 32, "action": "promote", "version": v2, "previous": v1,
             "at": "2024-01-01T00:00:00+00:00", "reason": "crashed", "forced": False}
    # what ChampionLog.move writes before a crash keeps it from appending the entry
    reg.log.write_pointer(seal_entry(reg.trust, entry, reg.history()))
    assert [h["version"] for h in reg.history()] == [v1]
    with reg.lock():
        pass
    with reg.lock():
        pass
    assert [h["version"] for h in reg.history()] == [v1, v2]
    assert [h["event_id"] for h in reg.history()].count("e" * 32) == 1


def test_torn_history_line_is_skipped_and_not_glued(reg):
    """Check that a half-written last history line is ignored and the next entry starts anew."""
    v1, v2 = add(reg), add(reg)
    reg.promote(v1, reason="one")
    with open(reg.history_path, "ab") as fh:
        fh.write(b'{"action": "promote", "vers')
    assert [h["version"] for h in reg.history()] == [v1]
    reg.promote(v2, reason="two")
    assert [h["version"] for h in reg.history()] == [v1, v2]
    assert reg.history_path.read_bytes().endswith(b"\n")


def test_promotion_can_require_the_champion_it_was_compared_with(reg):
    """Check that a candidate compared with one champion cannot replace a newer one."""
    v1, v2, v3 = add(reg), add(reg), add(reg)
    reg.promote(v1, reason="first", expected_champion=None)
    reg.promote(v2, reason="compared with v1", expected_champion=v1)
    before = reg.champion_path.read_bytes()
    with pytest.raises(RegistryError, match="champion changed from v0001 to v0002"):
        reg.promote(v3, reason="compared with v1 too", expected_champion=v1)
    with pytest.raises(RegistryError, match="champion changed from None to v0002"):
        reg.promote(v3, reason="compared with nothing", expected_champion=None)
    assert reg.champion_path.read_bytes() == before
    assert [h["version"] for h in reg.history()] == [v1, v2]
