"""`rareflow train` on a gzip bomb, through the command line and one flow (the refusal comes
from the flow's load task, so it runs under the session's Prefect test harness); the cap itself
is tested in tests/unit/test_input_caps.py."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.data.tables import MAX_INPUT_BYTES_ENV

pytestmark = pytest.mark.slow


def test_train_refuses_a_gzip_bomb_in_one_line(prefect_harness, gzip_bomb, tmp_path,
                                                monkeypatch):
    """Check that `rareflow train` on a gzip bomb exits 2 with one line and registers
    nothing."""
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "4000000")
    monkeypatch.setenv("RAREFLOW_ALLOW_UNSIGNED", "1")
    registry = tmp_path / "registry"
    result = CliRunner().invoke(app, ["train", "--data", str(gzip_bomb), "--label", "is_fraud",
                                      "--registry", str(registry), "--name", "m"])
    output = result.output + result.stderr
    assert result.exit_code == 2, output
    assert "holds more than 4,000,000 bytes" in output and "Traceback" not in output
    versions = registry / "m" / "versions"
    assert not versions.exists() or not any(versions.iterdir())
