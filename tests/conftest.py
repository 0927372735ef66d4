"""Shared fixtures: one Prefect test harness per session, tiny datasets, temp registries."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import pytest

# Each session gets its own Prefect home and no telemetry; set before prefect is imported.
_HOME = tempfile.mkdtemp(prefix="rareflow-prefect-")
os.environ["PREFECT_HOME"] = _HOME
# ... and its own user folders: no test reads or creates the developer's own key file
# (~/.config/rareflow/signing.key) or writes their cache.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="rareflow-config-")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rareflow-cache-")
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
# Every registry the suite writes is signed with this session's key; subprocesses, servers
# and workers inherit it through the environment. Unsigned versions are not accepted unless a
# test opts in itself.
os.environ["RAREFLOW_SIGNING_KEY"] = "test-session-" + secrets.token_hex(24)
for _name in ("RAREFLOW_SIGNING_KEY_FILE", "RAREFLOW_SIGNING_KEY_BLOCK",
              "RAREFLOW_ALLOW_UNSIGNED"):
    os.environ.pop(_name, None)

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
    from tasks.data.demo_tables import make_demo_data

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


class Canary:
    """A pickle that, when unpickled, writes ``path``: what an attacker would put in place of
    a model (here it only proves whether it ran)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('the payload ran')",)


def forge_version(folder: Path, canary_path: Path, *, how: str = "metadata") -> None:
    """Replace a version's model.joblib with a canary pickle, as an attacker who can write
    the registry but does not hold the signing key would.

    how: ``metadata``: put the payload's sha256 into metadata.json (what the issue did);
    ``manifest``: also into signature.json's file list; ``unsigned``: and delete
    signature.json.
    """
    import hashlib
    import io
    import json

    import joblib

    buf = io.BytesIO()
    joblib.dump(Canary(canary_path), buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    (folder / "model.joblib").write_bytes(payload)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["sha256"] = digest
    meta.setdefault("files", {})["model.joblib"] = digest
    (folder / "metadata.json").write_text(json.dumps(meta, indent=2))
    signature = folder / "signature.json"
    if how in ("manifest", "unsigned") and signature.is_file():
        doc = json.loads(signature.read_text())
        doc["files"]["model.joblib"] = digest
        doc["files"]["metadata.json"] = hashlib.sha256(
            (folder / "metadata.json").read_bytes()).hexdigest()
        signature.write_text(json.dumps(doc))
    if how == "unsigned":
        signature.unlink()


@pytest.fixture
def canary(tmp_path):
    """Where a forged model's payload would write; the test asserts it never appears."""
    return tmp_path / "CANARY-payload-ran"


@pytest.fixture
def forge():
    """:func:`forge_version`, for tests in any folder."""
    return forge_version
