"""Signed registry versions: what is refused before anything is unpickled, where the key
comes from, and unsigned versions only by explicit opt-in."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import registry_entries
from registry_entries import PASSED, models_cli

from schemas.errors import IntegrityError, RegistryError
from tasks.registry import signing
from tasks.registry.store import MODEL_FILE, Registry

ROOT = Path(__file__).resolve().parents[2]


def add(reg: Registry, value=1, meta=PASSED) -> str:
    """A version with every file a version can hold (its training rows too)."""
    return registry_entries.add(reg, value, meta, train_rows=[3, 1, 2])


def test_every_file_of_a_version_is_signed(reg):
    """Check that signature.json covers every file of the version with its sha256."""
    version = add(reg)
    folder = reg.version_dir(version)
    doc = json.loads((folder / signing.SIGNATURE_FILE).read_text())
    files = {p.name for p in folder.iterdir() if p.is_file()} - {signing.SIGNATURE_FILE}
    assert set(doc["files"]) == files == {"model.joblib", "metadata.json", "model_card.md",
                                          "reference.parquet", "train_rows.npy"}
    assert doc["algorithm"] == "HMAC-SHA256" and doc["key_id"] == reg.key.key_id
    assert reg.verify(version)["version"] == version
    assert reg.load(version)[0].value == 1 and reg.files(version).state() == "ok"


@pytest.mark.parametrize("how", ["metadata", "manifest", "unsigned"])
def test_forged_model_is_refused_before_unpickling(reg, forge, canary, how):
    """Check that a model replaced by a payload whose sha256 was written into the metadata
    (and the signature's file list, or with the signature deleted) is refused by every
    reader, naming the file, and the payload never runs."""
    version = add(reg)
    add(reg, value=2)
    reg.promote(version, reason="first")
    reg.promote("v0002", reason="second")
    forge(reg.version_dir(version), canary, how=how)
    message = {"metadata": r"metadata.json( and model.joblib)? do(es)? not match (its|their) "
                           "signed sha256",
               "manifest": "signature.json is invalid", "unsigned": "no signature.json"}[how]
    for read in (reg.load, reg.verify, reg.reference, reg.train_rows):
        with pytest.raises(IntegrityError, match=message):
            read(version)
    with pytest.raises(IntegrityError, match=message):
        reg.promote(version, reason="attacker", forced=True)
    with pytest.raises(IntegrityError, match=message):
        reg.rollback(reason="back to the forged one")
    assert reg.champion()["version"] == "v0002"
    assert reg.files(version).state() in ("INVALID", "unsigned")
    assert not canary.exists()


def test_model_swapped_alone_is_named(reg, forge, canary):
    """Check that a model.joblib changed without touching the metadata is refused by name."""
    version = add(reg)
    path = reg.version_dir(version) / MODEL_FILE
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=f"{version}: model.joblib does not match"):
        reg.load(version)


def test_forged_version_stays_refused_with_the_unsigned_opt_in(reg, forge, canary,
                                                               monkeypatch):
    """Check that RAREFLOW_ALLOW_UNSIGNED never accepts a version whose signature is there
    but wrong."""
    monkeypatch.setenv(signing.ALLOW_UNSIGNED_ENV, "1")
    version = add(reg)
    forge(reg.version_dir(version), canary, how="manifest")
    with pytest.raises(IntegrityError, match="signature.json is invalid"):
        reg.load(version)
    assert not canary.exists()


def test_another_key_or_another_place_is_refused(reg, tmp_path):
    """Check that a version signed with another key, or copied to another version id or
    model name, is refused."""
    import shutil

    version = add(reg)
    other = Registry(reg.root, "fraud", key=signing.SigningKey(b"x" * 40, "test"))
    with pytest.raises(IntegrityError, match="signed with another key"):
        other.load(version)  # the registry's identity is checked first
    shutil.copytree(reg.version_dir(version), reg.versions_dir / "v0007")
    with pytest.raises(IntegrityError, match="copied from another name or version"):
        reg.load("v0007")
    shutil.copytree(reg.dir, reg.root / "other")
    with pytest.raises(IntegrityError, match="copied from another name or version"):
        Registry(reg.root, "other").load(version)


def test_signed_version_without_a_key_is_refused(reg, monkeypatch):
    """Check that a signed version cannot be loaded when no key is configured to check it."""
    version = add(reg)
    monkeypatch.delenv(signing.KEY_ENV)
    with pytest.raises(RegistryError, match="no signing key is configured"):
        Registry(reg.root, "fraud").load(version)


def test_no_key_refuses_to_register_unless_unsigned_is_allowed(reg, monkeypatch, caplog):
    """Check that without a key nothing is written (a clear error), and with the opt-in an
    unsigned version is written and read with a warning each time."""
    monkeypatch.delenv(signing.KEY_ENV)
    bare = Registry(reg.root, "fraud")
    with pytest.raises(RegistryError,
                       match="no signing key is configured.*the key this registry is signed"):
        add(bare)
    assert bare.version_ids() == []
    monkeypatch.setenv(signing.ALLOW_UNSIGNED_ENV, "1")
    version = add(Registry(reg.root, "fraud"))
    assert not (reg.version_dir(version) / signing.SIGNATURE_FILE).exists()
    caplog.clear()
    assert Registry(reg.root, "fraud").load(version)[0].value == 1
    assert "is unsigned: accepted only because RAREFLOW_ALLOW_UNSIGNED=1" in caplog.text


def test_key_sources(tmp_path):
    """Check the key's sources and order: the variable, then the file; short or unreadable
    keys are errors naming where they came from."""
    key = "k" * 40
    path = tmp_path / "key"
    path.write_text("f" * 64 + "\n")
    assert signing.signing_key({}) is None
    assert signing.signing_key({signing.KEY_ENV: key}).secret == key.encode()
    from_file = signing.signing_key({signing.KEY_FILE_ENV: str(path)})
    assert from_file.secret == b"f" * 64 and "file" in from_file.source
    assert signing.signing_key({signing.KEY_ENV: key, signing.KEY_FILE_ENV: str(path)}) \
        .source == signing.KEY_ENV
    with pytest.raises(RegistryError, match="has 5 characters; use at least 32"):
        signing.signing_key({signing.KEY_ENV: "short"})
    with pytest.raises(RegistryError, match="cannot read the signing key file"):
        signing.signing_key({signing.KEY_FILE_ENV: str(tmp_path / "missing")})
    assert "secret" not in repr(from_file) and "fff" not in repr(from_file)


def test_keygen_writes_a_private_key_file(tmp_path):
    """Check that `rareflow keygen --out` writes a 256-bit key only its owner can read, and
    never overwrites one."""
    from typer.testing import CliRunner

    from flows.cli import app

    out = tmp_path / "signing.key"
    result = CliRunner().invoke(app, ["keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().strip()) == 64
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert CliRunner().invoke(app, ["keygen", "--out", str(out)]).exit_code == 6
    printed = CliRunner().invoke(app, ["keygen"]).output.strip()
    assert len(printed) == 64 and printed != out.read_text().strip()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_registry_files_honour_the_umask(reg, umask):
    """Check that champion.json and history.jsonl get the same mode as the version files
    (the umask's), so a serving account that can read the registry can read the champion."""
    old = os.umask(umask)
    try:
        reg.promote(add(reg), reason="first")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in (reg.champion_path, reg.history_path,
                 reg.version_dir("v0001") / "metadata.json",
                 reg.version_dir("v0001") / signing.SIGNATURE_FILE):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_package_imports_without_fcntl():
    """Check that the registry and the command line import where fcntl does not exist
    (Windows): the lock is filelock's."""
    code = ("import sys; sys.modules['fcntl'] = None; import tasks.registry.store, flows.cli, "
            "flows.training; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    source = (ROOT / "tasks" / "registry" / "store.py").read_text()
    assert "import fcntl" not in source and "os.kill" not in source


def _sign_cli(reg: Registry, *args: str):
    return models_cli(reg, "sign", *args)


@pytest.mark.parametrize("meta", [PASSED, {**PASSED, "rareflow_version": "0.3.0"}],
                         ids=["newer-than-a-signed-version", "written-by-a-signing-release"])
def test_a_removed_signature_is_not_signed_back(reg, forge, canary, meta):
    """Check that `rareflow models sign` refuses a version whose signature was deleted and
    whose model was replaced (exit 6, nothing signed, the payload never runs, the champion
    unchanged), and signs it only with --force --reason, recorded in history without moving
    the champion."""
    first = add(reg, meta=meta)
    second = add(reg, value=2, meta=meta)
    reg.promote(first, reason="first")
    target = first if "rareflow_version" in meta else second
    forge(reg.version_dir(target), canary, how="unsigned")
    code, out = _sign_cli(reg)
    assert code == 6 and "signature was removed" in out and target in out
    assert not reg.files(target).signed()
    with pytest.raises(IntegrityError):
        reg.load(target)
    assert _sign_cli(reg, "--force")[0] == 2  # --force without a reason
    code, out = _sign_cli(reg, "--force", "--reason", "restored from our own backup")
    assert code == 0 and f"{target}: signed" in out
    entry = reg.history()[-1]
    assert (entry["action"], entry["version"], entry["forced"]) == ("sign", target, True)
    assert entry["reason"] == "restored from our own backup"
    assert reg.champion()["version"] == first and reg.champion_stack() == [first]
    assert not canary.exists()


def test_a_champion_pointer_to_a_missing_version_says_so(reg):
    """Check that a (signed) champion pointer naming a version whose folder is gone is
    reported as that, not as an unsigned version."""
    import shutil

    reg.promote(add(reg), reason="first")
    reg.promote(add(reg, value=2), reason="second")
    shutil.rmtree(reg.version_dir("v0002"))
    with pytest.raises(RegistryError, match=r"no version 'v0002' \(the champion pointer names "
                                            r"it: roll back or promote\); versions: \['v0001'\]"):
        reg.load("champion")
