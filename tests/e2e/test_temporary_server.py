"""The temporary Prefect server rareflow starts early (tasks/runtime/_temporary_server.py),
started for real: the upgrade test that it still runs Prefect's own command is in
tests/unit/test_library_internals.py."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_temporary_server_starts_answers_and_stops(tmp_path):
    """Check that the early temporary server comes up on its port, answers /health and
    stops; with PREFECT_API_URL set none is started."""
    import os

    from tasks.runtime._temporary_server import start_temporary_server

    assert start_temporary_server({"PREFECT_API_URL": "http://x/api"}) is None
    assert start_temporary_server({"PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}) is None
    env = {**os.environ, "PREFECT_HOME": str(tmp_path)}
    env.pop("PREFECT_API_URL", None)
    server = start_temporary_server(env)
    try:
        assert server.ready(180), "the temporary server did not answer /health"
    finally:
        server.stop()
    assert server.process.poll() is not None
