"""The command line against Azure Blob Storage (Azurite on loopback, a real Blob HTTP API):
train on a Parquet table in a container into a registry there, list, promote, history,
rollback, score to the container, monitor with its reports there; and bad input (wrong
account key, missing container, unreachable endpoint, a registry on gs://): one line, exit 6
or 2, no key in the output."""

from __future__ import annotations

import io
import os
import signal
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
from tests.badinput.corpus import TRAIN_FLAGS
from tests.doc_blocks import block_after

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
GATES_OPEN = ("--min-recall-gate", "0", "--max-normalised-cost-gate", "1")


def run(*args):
    done = CliRunner().invoke(app, [str(a) for a in args], obj=CliState())
    return done, done.output + (done.stderr if done.stderr_bytes is not None else "")


@pytest.fixture
def azure_env(azure_server, monkeypatch):
    """This process reaches Azurite through AZURE_STORAGE_CONNECTION_STRING (the variable
    adlfs and rareflow's Azure store both read)."""
    for name, value in azure_server.env().items():
        monkeypatch.setenv(name, value)
    return azure_server


@pytest.fixture(scope="module")
def container_with_data(azure_server):
    """A container holding a training table, a batch to score and a labelled batch."""
    from tasks.data.demo_tables import make_demo_data

    container = azure_server.new_container()
    frame = make_demo_data(2000, positive_rate=0.05, seed=1)
    for key, table in (("data/train.parquet", frame),
                       ("batches/b1.parquet", frame.drop(columns=["is_fraud"]).head(300)),
                       ("labelled/l1.parquet", make_demo_data(3000, positive_rate=0.05,
                                                              seed=2))):
        body = io.BytesIO()
        table.to_parquet(body, index=False)
        azure_server.put(container, key, body.getvalue())
    return container


def test_train_list_history_rollback_score_monitor_on_azure(prefect_server, azure_env,
                                                            container_with_data):
    """Check that train (Parquet from az://) into an az:// registry twice, models
    list/promote/history/rollback, score to an az:// output and monitor (reports in the
    registry) work as on local disk and on S3."""
    root = f"az://{container_with_data}"
    reg_url = f"{root}/registry"
    for _ in range(2):
        done, out = run("train", "--data", f"{root}/data/train.parquet", *TRAIN_FLAGS,
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
    scored = pd.read_parquet(io.BytesIO(
        azure_env.client().get_blob_client(container_with_data, "scored/b1.parquet")
        .download_blob().readall()))
    assert len(scored) == 300 and {"score", "decision"} <= set(scored.columns)
    done, out = run("monitor", "--data", f"{root}/labelled/l1.parquet",
                    "--registry", reg_url, "--name", "fraud")
    assert done.exit_code in (EXIT_OK, 4, 5), out
    assert f"report {reg_url}/fraud/versions/" in out, out
    reports = azure_env.keys(container_with_data, f"registry/fraud/versions/{serving}/reports/")
    assert any(k.endswith("/summary.json") for k in reports), reports
    assert any(k.endswith(".html") for k in reports), reports


@pytest.mark.parametrize("problem, expected", [
    ("key", "access denied: check the credentials (AZURE_STORAGE_CONNECTION_STRING"),
    ("container", "the container does not exist"),
    ("endpoint", "the endpoint cannot be reached: check the account's blob endpoint"),
])
def test_bad_azure_storage_is_one_line_without_the_key(azure_server, container_with_data,
                                                       tmp_path, problem, expected):
    """Check that a wrong account key, a missing container and an unreachable endpoint each
    end `models list` on an az:// registry (exit 6), `train` on az:// data and `ingest` into
    an az:// source (exit 2) with one line naming the URL and what to do, never the key."""
    wrong_key = "QkFEa2V5" * 11 + "QQ=="
    connection = {"key": azure_server.connection_string(wrong_key),
                  "container": azure_server.connection_string(),
                  "endpoint": azure_server.connection_string().replace(
                      azure_server.endpoint, "http://127.0.0.1:9/devstoreaccount1")}[problem]
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": connection,
           "PREFECT_HOME": str(tmp_path / "home")}
    root = f"az://{'rf-absent' if problem == 'container' else container_with_data}"
    batch = tmp_path / "batch.csv"
    pd.DataFrame({"amount": [1.0, 2.0], "is_fraud": [0, 1]}).to_csv(batch, index=False)
    for args, status in (
            (["models", "list", "--registry", f"{root}/registry", "--name", "x"],
             EXIT_REGISTRY),
            (["train", "--data", f"{root}/data/train.parquet", *TRAIN_FLAGS,
              "--registry", str(tmp_path / "reg")], EXIT_BAD_INPUT),
            (["ingest", "--data", str(batch), "--source", f"{root}/source", "--name", "x"],
             EXIT_BAD_INPUT)):
        proc = subprocess.run([str(Path(sys.executable).with_name("rareflow")), *args],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
        text = proc.stdout + proc.stderr
        assert proc.returncode == status, text
        assert expected in text and f"{root}/" in text and "Traceback" not in text, text
        assert len([line for line in text.splitlines() if "error" in line.lower()]) == 1, text
        assert not any(k in text for k in (wrong_key, azure_server.key, "AccountKey")), text


def test_a_registry_on_gcs_is_refused_in_one_line(tmp_path):
    """Check that a gs:// registry (GCS generation preconditions are not implemented) is
    refused before anything is read, naming the URL and the stores that work."""
    done, out = run("models", "list", "--registry", "gs://bucket/registry", "--name", "fraud")
    assert done.exit_code == EXIT_BAD_INPUT, out
    assert "gs://bucket/registry" in out and "az://" in out and "s3://" in out, out


def test_the_documented_azure_loop_runs(prefect_server, tmp_path):
    """Check that docs/object-storage.md's whole loop against Azurite runs as written:
    ingest into an az:// source, train on it, score it into an az:// scored source, monitor,
    history (a free port instead of 10000, a folder of the test's instead of /tmp; Azurite
    already installed by .ci/needs-e2e.sh)."""
    from tests.e2e.azure_server import azurite_command

    from .conftest import VENV_BIN, free_port

    if azurite_command() is None:
        message = "Azurite is not installed: `npm ci --prefix .ci/azurite`"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    port = free_port()
    script = ["set -eu"]
    for line in block_after(REPO / "docs" / "object-storage.md",
                            "## The whole loop against Azurite"):
        if line.startswith(("uv sync", "npm ci")):
            continue  # the test runs in the synced environment, Azurite installed
        script.append(line.replace("10000", str(port)).replace("/tmp/", f"{tmp_path}/")
                      .replace(".venv/bin/", f"{VENV_BIN}/"))
        if "azurite-blob" in line:
            script += ["AZURITE=$!", "trap 'kill $AZURITE' EXIT",
                       f"for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/{port}) "
                       "2>/dev/null && break; sleep 0.2; done"]
    env = {k: v for k, v in prefect_server.env.items() if not k.startswith("AZURE_")}
    proc = subprocess.Popen(["bash", "-c", "\n".join(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            start_new_session=True)  # its own group: Azurite ends with it
    try:
        out = proc.communicate(timeout=600)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, out[-4000:]
    assert "Ingested 5000 new rows into az://lake/fraud/source" in out, out[-4000:]
    assert "new partitions (5000 rows)" in out, out[-4000:]  # the source scored
    assert "az://lake/registry/fraud/versions/v0001/" in out, out[-4000:]  # the reports
    assert "promote" in out.split("Ingested", 1)[1], out[-4000:]  # models history
