"""The training flow's preflight: registry problems are found before any data is read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.config import Gates, TrainingConfig
from schemas.errors import ConfigError, IntegrityError, RegistryError
from tasks.registry import preflight as preflight_module
from tasks.registry.preflight import preflight
from tasks.registry.store import Registry

ROOT = Path(__file__).resolve().parents[2]


def config(registry, **kw) -> TrainingConfig:
    return TrainingConfig(data="never-read.csv", label="y", registry=str(registry),
                          name="fraud", **kw)


def test_a_writable_registry_passes_and_is_created(tmp_path):
    """Check that a missing registry folder is created and returned ready to use."""
    reg = preflight(config(tmp_path / "new" / "registry"))
    assert reg.versions_dir.is_dir() and not list(reg.versions_dir.iterdir())


@pytest.mark.parametrize("where", ["root", "parent", "model"])
def test_a_registry_that_is_a_file_is_refused(tmp_path, where):
    """Check that a registry path (or its parent, or the model's folder) that is a file is
    a one-line registry error naming it."""
    registry = tmp_path / "registry"
    if where == "root":
        registry.write_text("not a folder")
    elif where == "parent":
        (tmp_path / "file").write_text("x")
        registry = tmp_path / "file" / "registry"
    else:
        registry.mkdir()
        (registry / "fraud").write_text("x")
    with pytest.raises(RegistryError, match="is a file, not a directory"):
        preflight(config(registry))


def test_a_read_only_registry_is_refused(tmp_path):
    """Check that a registry this user cannot write is refused before training (when the
    tests run as root, whose privilege ignores file modes, the check runs in a child without
    that privilege: setpriv drops CAP_DAC_OVERRIDE)."""
    registry = tmp_path / "registry"
    versions = registry / "fraud" / "versions"
    versions.mkdir(parents=True)
    versions.chmod(0o555)
    try:
        if os.geteuid() != 0:
            with pytest.raises(RegistryError, match="is not writable"):
                preflight(config(registry))
            return
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        code = ("from schemas.config import TrainingConfig\n"
                "from tasks.registry.preflight import preflight\n"
                "from schemas.errors import RegistryError\n"
                f"try:\n    preflight(TrainingConfig(data='x.csv', label='y', "
                f"registry={str(registry)!r}, name='fraud'))\n"
                "except RegistryError as exc:\n    print(exc)\n")
        done = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search",
                               sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert "is not writable (Permission denied)" in done.stdout, done.stdout + done.stderr
    finally:
        versions.chmod(0o755)


def test_too_little_free_space_is_refused(tmp_path, monkeypatch):
    """Check that less free space than a version needs is refused, with both figures."""
    usage = shutil.disk_usage(tmp_path)._replace(free=10 * 2**20)
    monkeypatch.setattr(preflight_module.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(RegistryError, match="has 10 MiB free; a new version needs about 64 MiB"):
        preflight(config(tmp_path / "registry"))


def test_expected_size_follows_the_newest_version(tmp_path):
    """Check that the space asked for grows with the size of the newest version."""
    reg = Registry(tmp_path / "registry", "fraud")
    reg.register(os.urandom(40 * 2**20), {"verdict": {"status": "passed"}})
    assert preflight_module.expected_bytes(reg) > 80 * 2**20


def test_no_signing_key_is_refused_before_training(tmp_path, monkeypatch):
    """Check that a run that could not sign its version fails in preflight."""
    monkeypatch.delenv("RAREFLOW_SIGNING_KEY")
    with pytest.raises(RegistryError, match="no signing key is configured"):
        preflight(config(tmp_path / "registry"))


def test_a_forged_champion_is_refused_before_training(tmp_path, forge, canary):
    """Check that a champion failing its signature stops the run in preflight, unpickled."""
    reg = Registry(tmp_path / "registry", "fraud")
    reg.promote(reg.register({"a": 1}, {"verdict": {"status": "passed"}}), reason="first")
    forge(reg.version_dir("v0001"), canary)
    with pytest.raises(IntegrityError, match="v0001: metadata.json"):
        preflight(config(tmp_path / "registry"))
    assert not canary.exists()


def test_manual_approval_needs_a_server(tmp_path):
    """Check that manual approval without a Prefect server to approve in is refused."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}), \
            pytest.raises(ConfigError, match="no Prefect server is configured"):
        preflight(config(tmp_path / "registry", gates=Gates(approval="manual")))
