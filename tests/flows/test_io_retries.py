"""Transient I/O errors are retried by the I/O tasks (IO_RETRIES), and the retry is logged."""

from __future__ import annotations

import logging

import pytest

from tasks.registry.store import METADATA_FILE, Registry

pytestmark = pytest.mark.slow


def test_transient_io_error_is_retried_and_logged(prefect_harness, monkeypatch, tmp_path,
                                                  caplog):
    """Check that an OSError on the first load attempt is retried, succeeds, and is logged."""
    from prefect import flow

    import tasks.data.tables as load_module

    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n3,4\n", encoding="utf-8")
    real = load_module._read_csv
    calls = []

    def flaky(p):
        calls.append(p)
        if len(calls) == 1:
            raise OSError("simulated transient I/O error")
        return real(p)

    monkeypatch.setattr(load_module, "_read_csv", flaky)

    @flow
    def load_once(p: str):
        return load_module.load_task(p)

    caplog.set_level(logging.INFO, logger="prefect.task_runs")
    df = load_once(str(path))
    assert len(df) == 2 and len(calls) == 2
    assert "simulated transient I/O error" in caplog.text
    assert "Retry 1/2" in caplog.text

def test_rareflow_error_is_not_retried(prefect_harness, tmp_path, caplog):
    """Check that a bad file fails the load task at once: a verdict, not a transient glitch."""
    from prefect import flow

    from schemas.errors import DataError
    from tasks.data.tables import load_task

    @flow
    def load_once(p: str):
        return load_task(p)

    caplog.set_level(logging.INFO, logger="prefect.task_runs")
    with pytest.raises(DataError, match="does not exist"):
        load_once(str(tmp_path / "missing.csv"))
    assert "Retry 1/" not in caplog.text

def test_transient_error_on_register_is_retried(prefect_harness, monkeypatch, tmp_path,
                                                caplog):
    """Check that a transient OSError while registering is retried and stores one version."""
    from prefect import flow

    import tasks.registry.versions as versions_module
    from tasks.registry.store import register_task

    reg = Registry(tmp_path / "registry", "retried")
    real = versions_module.sha256_file
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) == 1:
            raise OSError("simulated disk hiccup")
        return real(path)

    monkeypatch.setattr(versions_module, "sha256_file", flaky)

    @flow
    def register_once():
        return register_task(reg, {"a": 1}, {"verdict": {"status": "passed"}}, None,
                             "card {version}")

    caplog.set_level(logging.INFO, logger="prefect.task_runs")
    published = register_once()
    assert (published.version, published.status, published.champion) == ("v0001", "passed",
                                                                          "v0001")
    assert reg.version_ids() == ["v0001"]
    assert not list(reg.versions_dir.glob(".tmp-*"))
    assert "simulated disk hiccup" in caplog.text and "Retry 1/2" in caplog.text
    assert METADATA_FILE in {p.name for p in reg.version_dir("v0001").iterdir()}


def test_retried_promotion_after_a_failed_history_append_is_not_stale(prefect_harness,
                                                                       monkeypatch, tmp_path):
    """Check that when the history append fails once after champion.json was replaced, the
    retried register task recognises its own registration and move: one new version, the
    run is promoted (not 'stale'), and the history holds the move exactly once."""
    from prefect import flow

    from tasks.registry.champion import ChampionLog
    from tasks.registry.store import register_task

    reg = Registry(tmp_path / "registry", "idem")
    v1 = reg.register({"a": 1}, {"verdict": {"status": "passed"}})
    reg.promote(v1, reason="first")
    real = ChampionLog.append_history
    failures = []

    def fails_once(self, entry):
        if not failures:
            failures.append(entry)
            raise OSError("simulated full disk while appending history")
        return real(self, entry)

    monkeypatch.setattr(ChampionLog, "append_history", fails_once)

    @flow
    def publish_once():
        return register_task(reg, {"a": 2}, {"verdict": {"status": "passed"}}, None, None,
                             compared_with=v1)

    published = publish_once()
    assert (published.status, published.champion) == ("passed", published.version)
    assert failures, "the simulated failure did not happen"
    assert reg.version_ids() == [v1, published.version]
    assert reg.champion()["version"] == published.version
    moves = [(h["version"], h["previous"]) for h in reg.history()]
    assert moves == [(v1, None), (published.version, v1)]
