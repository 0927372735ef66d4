"""`rareflow demo --tables` with no signing key configured: it makes its own key, and its first
model passes the bound gates and is promoted."""

from __future__ import annotations

import pytest

from flows.cli import run_training
from flows.demo import DEMO_NAME, run_demo
from schemas.config import DEMO_QUICK
from schemas.errors import EXIT_OK
from tasks import signing
from tasks.registry import Registry

pytestmark = pytest.mark.slow


def test_demo_without_a_key_signs_and_promotes_its_first_model(prefect_harness, tmp_path,
                                                               monkeypatch):
    """Check that the table demo, run as `rareflow demo --tables` runs it, with no key set,
    exits 0, signs its versions with a key it makes in its folder, and promotes v0001 under
    the bound gates."""
    for name in (signing.KEY_ENV, signing.KEY_FILE_ENV, signing.KEY_BLOCK_ENV,
                 signing.ALLOW_UNSIGNED_ENV):
        monkeypatch.setenv(name, "")  # restored afterwards, also the key file the demo sets
    monkeypatch.chdir(tmp_path)  # the demo writes ./rareflow.yaml for the README's commands
    said: list[str] = []
    code = run_demo(tmp_path, size=DEMO_QUICK, registry=None, time_budget_s=600,
                    train=run_training, say=said.append)
    assert code == EXIT_OK, "\n".join(said)
    key_file = tmp_path / "signing.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o077) == 0
    assert any(f"made {key_file}" in line for line in said)
    assert any(f"{signing.KEY_FILE_ENV}={key_file}" in line for line in said)
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
