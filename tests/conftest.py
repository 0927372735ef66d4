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


@pytest.fixture
def gzip_bomb(tmp_path):
    """A 64 MB CSV (a header and one repeated row) gzipped to well under 1 MB."""
    import gzip

    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"amount,is_fraud\n")
        block = b"1.0,0\n" * 100_000
        for _ in range(107):
            fh.write(block)
    assert path.stat().st_size < 1_000_000
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


@pytest.fixture(autouse=True)
def stop_temporary_servers(monkeypatch):
    """Stop, when the test ends, every Prefect temporary server a command started in-process.

    `rareflow train`, `score`, `monitor` and `demo` start one as the command starts
    (flows/cli_flow_server.py FlowServer) and stop it when their first flow finds Prefect pointed
    elsewhere, or at process exit. Run through CliRunner, a command that fails before its
    first flow (bad input, a forged version) or whose flow a test replaces kept a uvicorn
    server booting and polling beside the rest of the session: about 50 s of CPU in
    tests/unit alone.
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


@pytest.fixture
def canary(tmp_path):
    """Where a forged model's payload would write; the test asserts it never appears."""
    return tmp_path / "CANARY-payload-ran"


@pytest.fixture
def forge():
    """:func:`forge_version`, for tests in any folder."""
    return forge_version


_FROZEN_FOR = []  # the test module whose objects were frozen last


def pytest_runtest_setup(item):
    """Before each test module, collect the garbage and freeze what is left alive (the
    libraries imported so far, session fixtures): the collector then never scans them again.

    Validation and table loading call ``gc.collect()`` to free a table's temporaries before
    fitting (tasks/data/validation.py, tasks/data/tables.py). In a command that is cheap; in
    the test process, with some 250,000 library objects alive, each call scanned them all:
    about 0.45 s of CPU per validated table, 15 s in tests/unit/test_validate.py alone. Done
    per module, not once, because tests import libraries (evidently, Prefect's server) as
    they go. What a test creates is still collected as before, and still listed by
    ``gc.get_objects()`` (which leaves frozen objects out): the leak checks in
    tests/flows/test_training_flow.py and tests/unit/test_fold_memory.py look for objects
    their own test creates.
    """
    import gc

    if _FROZEN_FOR[-1:] != [item.module]:
        gc.collect()
        gc.freeze()
        _FROZEN_FOR[:] = [item.module]
