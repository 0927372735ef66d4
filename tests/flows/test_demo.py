"""`rareflow demo --tables` with no signing key configured: it makes the user's key (in the
user's config folder, never in the demo's folder), and its first model passes the bound gates
and is promoted."""

from __future__ import annotations

import pytest

from flows.cli import run_training
from flows.demo import DEMO_NAME, run_demo
from schemas.config import DEMO_QUICK
from schemas.errors import EXIT_OK
from tasks.registry import signing
from tasks.registry.store import Registry

pytestmark = pytest.mark.slow


def test_demo_without_a_key_signs_and_promotes_its_first_model(prefect_harness, tmp_path,
                                                               monkeypatch):
    """Check that the table demo, run as `rareflow demo --tables` runs it, with no key set,
    exits 0, signs its versions with the user's key it makes in $XDG_CONFIG_HOME/rareflow
    (none in the demo's folder, nothing to export), and promotes v0001 under the bound
    gates."""
    for name in (signing.KEY_ENV, signing.KEY_FILE_ENV, signing.KEY_BLOCK_ENV,
                 signing.ALLOW_UNSIGNED_ENV):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)  # the demo writes ./rareflow.yaml for the README's commands
    said: list[str] = []
    code = run_demo(tmp_path, size=DEMO_QUICK, registry=None, time_budget_s=600,
                    train=run_training, say=said.append)
    assert code == EXIT_OK, "\n".join(said)
    key_file = tmp_path / "config" / "rareflow" / "signing.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o077) == 0
    assert list(tmp_path.rglob("*.key")) == [key_file]  # none in the demo's folder
    assert sum(f"made one in {key_file}" in line for line in said) == 1
    assert not any("export" in line for line in said)
    reg = Registry(tmp_path / "registry", DEMO_NAME)
    first = reg.metadata("v0001")["verdict"]
    assert first["status"] == "passed", first["gates"]
    assert {g["gate"] for g in first["gates"]} >= {"min_recall", "min_pr_auc",
                                                   "max_normalised_cost"}
    assert all(g["value"] != g["point"] for g in first["gates"]
               if g["gate"] in ("min_recall", "max_normalised_cost"))  # bounds were judged
    assert reg.history()[0]["version"] == "v0001"
    assert (tmp_path / "rareflow.yaml").is_file()
    assert (reg.version_dir("v0001") / signing.SIGNATURE_FILE).is_file()
