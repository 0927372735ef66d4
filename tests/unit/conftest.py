"""Fixtures of the unit layer: a fresh registry, and no Prefect server outliving its test."""

from __future__ import annotations

import pytest


@pytest.fixture
def reg(tmp_path):
    """An empty registry for the model ``fraud`` (signed with the session's key)."""
    from tasks.registry.store import Registry

    return Registry(tmp_path / "registry", "fraud")


@pytest.fixture(autouse=True)
def stop_temporary_servers(monkeypatch):
    """Stop, when the test ends, every Prefect temporary server a command started in-process.

    `rareflow train` and `rareflow demo` start one as the command starts (flows/cli_support.py
    FlowServer) and stop it only at process exit: run through CliRunner, each kept a uvicorn
    server booting and polling beside the rest of the unit suite (about 50 s of CPU in all).
    The server still starts for real; it is only stopped when the test is over.
    """
    from tasks.runtime import _temporary_server

    started = []
    real_start = _temporary_server.start_temporary_server

    def start_and_remember(*args, **kwargs):
        server = real_start(*args, **kwargs)
        if server is not None:
            started.append(server)
        return server

    monkeypatch.setattr(_temporary_server, "start_temporary_server", start_and_remember)
    yield
    for server in started:
        server.stop()
