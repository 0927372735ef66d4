"""Prefect's environment for a command-line run: no telemetry, rareflow's loggers, its own
Prefect home unless the user points at a server, and expected errors printed once."""

from __future__ import annotations

import os

from flows.cli_errors import CliState
from flows.cli_log_filter import quiet_expected_errors

PREFECT_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,flows,schemas",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def setup(state: CliState) -> None:
    """Prefect's environment for a command-line run (its own Prefect home unless the user
    points at a server: :func:`tasks.runtime._temporary_server.private_prefect_home`), and
    expected errors printed once (not with ``--debug``)."""
    from tasks.runtime._temporary_server import use_private_prefect_home

    for key, value in PREFECT_ENV.items():
        os.environ.setdefault(key, value)
    use_private_prefect_home()
    if not state.debug:
        quiet_expected_errors()
