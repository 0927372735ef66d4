"""The command line against S3 (moto), Azure Blob Storage (Azurite) and Google Cloud Storage
(fake-gcs-server), all on loopback and real HTTP APIs: train on a Parquet table and a CSV in
a bucket (container) into a registry there, list, promote, history, rollback, score to it,
monitor with its reports there; and bad input (a wrong key, a missing bucket or container,
an unreachable endpoint): one line, exit 6 or 2, no key in the output (S3's ingest, Dask
scoring and storage options: test_s3_cli.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_errors import CliState
from schemas.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REGISTRY
from tasks.registry.open_registry import open_registry
from tasks.runtime.object_store import open_store
from tests.badinput.corpus import TRAIN_FLAGS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
GATES_OPEN = ("--min-recall-gate", "0", "--max-normalised-cost-gate", "1")


def run(*args):
    done = CliRunner().invoke(app, [str(a) for a in args], obj=CliState())
    return done, done.output + (done.stderr if done.stderr_bytes is not None else "")


@pytest.fixture(params=["s3", "azure", "gcs"])
def cloud_with_data(request, monkeypatch):
    """(cloud, root URL) of a fresh bucket (container) holding a training table as Parquet and
    as CSV, a batch to score and a labelled batch; this process reaches it through the cloud's
    standard variables (AWS_*, AZURE_STORAGE_CONNECTION_STRING, STORAGE_EMULATOR_HOST)."""
    from tasks.data.demo_tables import make_demo_data

    from .conftest import Cloud

    cloud = Cloud(request.param, request.getfixturevalue(f"{request.param}_server"))
    for name, value in cloud.env().items():
        monkeypatch.setenv(name, value)
    root = cloud.new_root("").rstrip("/")
    frame = make_demo_data(2000, positive_rate=0.05, seed=1)
    for key, table in (("data/train.parquet", frame),
                       ("batches/b1.parquet", frame.drop(columns=["is_fraud"]).head(300)),
                       ("labelled/l1.parquet", make_demo_data(3000, positive_rate=0.05,
                                                              seed=2))):
        cloud.put(root, key, table.to_parquet(index=False))
    cloud.put(root, "data/train.csv", frame.to_csv(index=False).encode())
    for day in (1, 2):  # a source of two partitions to score on Dask
        cloud.put(root, f"stream/date=2026-11-0{day}/part-0.parquet", frame.drop(
            columns=["is_fraud"]).iloc[(day - 1) * 200:day * 200].to_parquet(index=False))
    return cloud, root


def test_train_list_history_rollback_score_monitor(prefect_server, cloud_with_data, tmp_path):
    """Check that train (Parquet, then CSV, from the cloud) into a registry there, models
    list/promote/history/rollback, score to an output there, score a source there on Dask
    into a scored source there, and monitor (reports and state in the registry) work as on
    local disk, on S3, Azure and GCS."""
    cloud, root = cloud_with_data
    reg_url = f"{root}/registry"
    for data in ("data/train.parquet", "data/train.csv"):
        done, out = run("train", "--data", f"{root}/{data}", *TRAIN_FLAGS,
                        "--registry", reg_url, "--name", "fraud", *GATES_OPEN)
        assert done.exit_code in (EXIT_OK, 3), out
    reg = open_registry(reg_url, "fraud")
    assert reg.version_ids() == ["v0001", "v0002"]
    assert reg.verify("v0001")["lineage"]["source"] == f"{root}/data/train.parquet"
    serving = reg.champion()["version"]
    other = "v0001" if serving == "v0002" else "v0002"
    done, out = run("models", "list", "--registry", reg_url, "--name", "fraud")
    assert done.exit_code == EXIT_OK and "v0002" in out, out
    done, out = run("models", "promote", other, "--registry", reg_url, "--name", "fraud",
                    "--reason", "test", "--force")
    assert done.exit_code == EXIT_OK, out
    done, out = run("models", "rollback", "--registry", reg_url, "--name", "fraud",
                    "--reason", "test")
    assert done.exit_code == EXIT_OK, out
    assert open_registry(reg_url, "fraud").champion()["version"] == serving
    done, out = run("models", "history", "--registry", reg_url, "--name", "fraud", "--at",
                    "now")
    assert done.exit_code == EXIT_OK and serving in out, out
    done, out = run("score", "--data", f"{root}/batches/b1.parquet",
                    "--out", f"{root}/scored/b1.parquet", "--registry", reg_url,
                    "--name", "fraud")
    assert done.exit_code == EXIT_OK, out
    scored = pd.read_parquet(io.BytesIO(open_store(root).read("scored/b1.parquet")))
    assert len(scored) == 300 and {"score", "decision"} <= set(scored.columns)
    _score_the_source_on_dask(root, reg_url, tmp_path)
    done, out = run("monitor", "--data", f"{root}/labelled/l1.parquet",
                    "--registry", reg_url, "--name", "fraud")
    assert done.exit_code in (EXIT_OK, 4, 5), out
    assert f"report {reg_url}/fraud/versions/" in out, out
    reports = open_store(reg_url).list(f"fraud/versions/{serving}/reports/")
    assert any(k.endswith("/summary.json") for k in reports), reports
    assert any(k.endswith(".html") for k in reports), reports
    state = open_registry(reg_url, "fraud").store.read("fraud/monitor_state.json")
    assert state and b"checks" in state


def _score_the_source_on_dask(root: str, reg_url: str, tmp_path) -> None:
    """`score --executor dask` of a source in the bucket into a scored source there (workers
    fetch, score and upload their partitions) writes what a local scoring writes."""
    common = ("score", "--data", f"{root}/stream", "--registry", reg_url, "--name", "fraud")
    done, out = run(*common, "--out", f"{root}/stream-scored", "--executor", "dask")
    assert done.exit_code == EXIT_OK and "Scored 2 new partitions (400 rows)" in out, out
    done, out = run(*common, "--out", tmp_path / "scored-here")
    assert done.exit_code == EXIT_OK and "Scored 2 new partitions (400 rows)" in out, out
    store = open_store(root)
    keys = sorted(k for k in store.list("stream-scored/") if k.endswith(".parquet"))
    assert len(keys) == 2, keys
    on_dask = pd.concat([pd.read_parquet(io.BytesIO(store.read(k))) for k in keys],
                        ignore_index=True)
    here = pd.read_parquet(tmp_path / "scored-here")
    assert len(on_dask) == 400
    assert on_dask.drop(columns="scored_at").equals(
        here.drop(columns=["scored_at", "date"], errors="ignore")[list(on_dask.columns.drop(
            "scored_at"))])


WRONG_KEY = "QkFEa2V5" * 11 + "QQ=="  # an Azure account key's shape, not Azurite's


def _bad_environment(cloud: str, problem: str, server) -> tuple[dict, str]:
    """(the environment, the root URL) of each bad case."""
    if cloud == "s3":
        env = {**server.env(), **{"endpoint": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
                                  "key": {"AWS_SECRET_ACCESS_KEY": WRONG_KEY}}.get(problem, {})}
        return env, f"s3://{server.new_bucket() if problem != 'bucket' else 'rf-absent'}"
    if cloud == "gcs":
        endpoint = "http://127.0.0.1:9" if problem == "endpoint" else server.endpoint
        bucket = server.new_bucket() if problem != "bucket" else "rf-absent"
        return {"STORAGE_EMULATOR_HOST": endpoint}, f"gs://{bucket}"
    connection = {"key": server.connection_string(WRONG_KEY),
                  "container": server.connection_string(),
                  "endpoint": server.connection_string().replace(
                      server.endpoint, "http://127.0.0.1:9/devstoreaccount1")}[problem]
    container = "rf-absent" if problem == "container" else server.new_container()
    return {"AZURE_STORAGE_CONNECTION_STRING": connection}, f"az://{container}"


@pytest.mark.parametrize("cloud, problem, expected", [
    ("s3", "key", "access denied: check the credentials (AWS_ACCESS_KEY_ID"),
    ("s3", "bucket", "the bucket does not exist"),
    ("s3", "endpoint", "the endpoint cannot be reached: check AWS_ENDPOINT_URL"),
    ("azure", "key", "access denied: check the credentials (AZURE_STORAGE_CONNECTION_STRING"),
    ("azure", "container", "the container does not exist"),
    ("azure", "endpoint", "the endpoint cannot be reached: check the account's blob endpoint"),
    ("gcs", "bucket", "the bucket does not exist"),
    ("gcs", "endpoint", "the endpoint cannot be reached: check STORAGE_EMULATOR_HOST"),
])
def test_bad_cloud_storage_is_one_line_without_the_key(request, tmp_path, cloud, problem,
                                                       expected):
    """Check that a wrong key, a missing bucket (container) and an unreachable endpoint each
    end `models list` on a registry there (exit 6), `train` on data there and `ingest` into a
    source there (exit 2) with one line naming the URL and what to do, in seconds, never a
    key. (fake-gcs-server checks no credentials: GCS's refusal is the message's code path
    only, `storage_problem` with 401/403.)"""
    server = request.getfixturevalue(f"{cloud}_server")
    bad, root = _bad_environment(cloud, problem, server)
    env = {**os.environ, **bad}
    batch = tmp_path / "batch.csv"
    pd.DataFrame({"amount": [1.0, 2.0], "is_fraud": [0, 1]}).to_csv(batch, index=False)
    commands = (
        (["models", "list", "--registry", f"{root}/registry", "--name", "x"], EXIT_REGISTRY),
        (["train", "--data", f"{root}/data/train.parquet", *TRAIN_FLAGS,
          "--registry", str(tmp_path / "reg")], EXIT_BAD_INPUT),
        (["ingest", "--data", str(batch), "--source", f"{root}/source", "--name", "x"],
         EXIT_BAD_INPUT))
    # the three at once (each its own PREFECT_HOME): they wait on imports and servers
    procs = [(subprocess.Popen([str(Path(sys.executable).with_name("rareflow")), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**env, "PREFECT_HOME": str(tmp_path / f"home{i}")},
                               cwd=REPO), status)
             for i, (args, status) in enumerate(commands)]
    try:
        for proc, status in procs:
            text = "".join(proc.communicate(timeout=300))
            assert proc.returncode == status, text
            assert expected in text and f"{root}/" in text and "Traceback" not in text, text
            assert len([ln for ln in text.splitlines() if "error" in ln.lower()]) == 1, text
            assert not any(k in text for k in (WRONG_KEY, "AccountKey")), text
            if cloud == "azure":
                assert server.key not in text
            if cloud == "s3":
                assert server.key_id not in text and server.secret not in text
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def test_a_registry_on_another_filesystem_is_refused_in_one_line(tmp_path):
    """Check that a registry on a filesystem without the conditional writes rareflow uses
    (here fsspec's memory://) is refused before anything is read, naming the URL and the
    stores that work."""
    done, out = run("models", "list", "--registry", "memory://bucket/registry", "--name", "x")
    assert done.exit_code == EXIT_BAD_INPUT, out
    assert "memory://bucket/registry" in out, out
    assert all(scheme in out for scheme in ("s3://", "az://", "gs://")), out


def test_the_documented_azure_loop_runs(prefect_server, tmp_path):
    """Check that docs/object-storage.md's whole loop against Azurite runs as written:
    ingest into an az:// source, train on it, score it into an az:// scored source, monitor,
    history (a free port instead of 10000, a folder of the test's instead of /tmp; Azurite
    already installed by .ci/needs-e2e.sh)."""
    from .conftest import VENV_BIN
    from .loopback import run_documented_loop

    if not (REPO / ".ci" / "azurite" / "node_modules" / ".bin" / "azurite-blob").exists():
        message = "Azurite is not installed: `npm ci --prefix .ci/azurite`"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    env = {k: v for k, v in prefect_server.env.items() if not k.startswith("AZURE_")}
    out = run_documented_loop(REPO / "docs" / "object-storage.md",
                              "## The whole loop against Azurite", port="10000",
                              server="azurite-blob", skip=("uv sync", "npm ci"), env=env,
                              tmp_path=tmp_path, venv_bin=VENV_BIN)
    assert "Ingested 5000 new rows into az://lake/fraud/source" in out, out[-4000:]
    assert "new partitions (5000 rows)" in out, out[-4000:]  # the source scored
    assert "az://lake/registry/fraud/versions/v0001/" in out, out[-4000:]  # the reports
    assert "promote" in out.split("Ingested", 1)[1], out[-4000:]  # models history
