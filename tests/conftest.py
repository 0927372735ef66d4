"""Shared fixtures: one Prefect test harness per session, tiny datasets, temp registries."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Each session gets its own Prefect home and no telemetry; set before prefect is imported.
_HOME = tempfile.mkdtemp(prefix="rareflow-prefect-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks,flows,schemas")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# A developer's own defaults must not reach the tests' commands.
for _var in ("RAREFLOW_REGISTRY", "RAREFLOW_NAME", "RAREFLOW_REPORTS_URL"):
    os.environ.pop(_var, None)
# One OpenMP thread per process: the suite runs servers, workers and flows side by side on two
# cores, where HistGradientBoosting's spinning threads slow each other down about tenfold.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server (temporary SQLite) for every flow test in the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def demo_small():
    """A 6,000-row demo table (about 90 positives)."""
    from tasks.demo import make_demo_data

    return make_demo_data(6000, positive_rate=0.03, seed=3)


@pytest.fixture
def demo_csv(tmp_path, demo_small):
    path = tmp_path / "demo.csv"
    demo_small.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def shared_datasets():
    """The real datasets beside the repository; skip when this is a user's fresh clone."""
    folder = SHARED / "datasets"
    if not (folder / "manifest.json").is_file():
        pytest.skip("../shared/datasets is not present")
    return folder
