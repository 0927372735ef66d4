"""The command line against S3 (moto's server on loopback): ingest into an S3 source, train
on it, score it locally and on Dask, storage options, the documented loop. (Train, list,
promote, history, rollback, score, monitor and bad input on S3, Azure and GCS:
test_cloud_cli.py.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_errors import CliState
from schemas.errors import EXIT_BAD_INPUT, EXIT_OK
from tasks.registry.open_registry import open_registry
from tasks.runtime.object_store_api import configured_storage
from tests.badinput.corpus import TRAIN_FLAGS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def run(*args):
    done = CliRunner().invoke(app, [str(a) for a in args], obj=CliState())
    return done, done.output + (done.stderr if done.stderr_bytes is not None else "")


def test_ingest_into_an_s3_source_then_train_on_it(prefect_server, s3_env, tmp_path):
    """Check that `ingest --source s3://...` lands a batch as one partition per day with the
    schema file, that landing it again writes nothing, that a batch that does not fit is
    refused with nothing written, that `train --data s3://.../source` trains on it, and that
    `score` of the S3 source writes each partition scored (locally and on Dask, the same rows),
    then nothing on a rerun; and that a scored source in the bucket itself (Dask workers
    uploading, a local rerun scoring nothing) holds the same rows, answers `audit` and
    `monitor --scored`, and that two runs started at once on a new partition score it once."""
    from tasks.data.demo_tables import make_demo_data

    bucket = s3_env.new_bucket()
    source = f"s3://{bucket}/fraud/source"
    frame = make_demo_data(3000, positive_rate=0.05, seed=4)
    frame["event_time"] = pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(
        frame.index % 3, unit="D")
    batch = tmp_path / "batch.csv"
    frame.to_csv(batch, index=False)
    ingest = ["ingest", "--data", batch, "--source", source, "--name", "fraud",
              "--time-column", "event_time"]
    done, out = run(*ingest)
    assert done.exit_code == EXIT_OK, out
    keys = s3_env.keys(bucket, "fraud/source/")
    assert keys[0] == "fraud/source/_rareflow_source.json", keys
    assert [k.split("/")[2] for k in keys[1:]] == [
        "date=2026-11-01", "date=2026-11-02", "date=2026-11-03"], keys
    assert "Ingested 3000 new rows" in out and source in out, out
    done, out = run(*ingest)
    assert done.exit_code == EXIT_OK and "already present" in out, out
    assert "nothing announced" in out and s3_env.keys(bucket, "fraud/source/") == keys
    bad = tmp_path / "bad.csv"
    frame.assign(amount="lots").to_csv(bad, index=False)
    done, out = run("ingest", "--data", bad, "--source", source, "--name", "fraud")
    assert done.exit_code == EXIT_BAD_INPUT and "amount" in out, out
    assert s3_env.keys(bucket, "fraud/source/") == keys
    reg_url = f"s3://{bucket}/registry"
    done, out = run("train", "--data", source, *TRAIN_FLAGS, "--registry", reg_url,
                    "--name", "fraud", "--min-recall-gate", "0",
                    "--max-normalised-cost-gate", "1", "--time-column", "event_time",
                    "--window", "1d", "--as-of", "2026-11-03T12:00:00Z")
    assert done.exit_code == EXIT_OK, out
    meta = open_registry(reg_url, "fraud").verify("v0001")
    lineage = meta["lineage"]  # (Nov 2 12:00, Nov 3 12:00]: the midnight rows of Nov 3
    assert lineage["source"] == source and lineage["rows"] == 1000, lineage
    assert [f["path"].split("/")[0] for f in lineage["files"]] == ["date=2026-11-03"], lineage
    assert lineage["files_skipped"] == 2, lineage
    done, out = run("score", "--data", source, "--registry", reg_url, "--name", "fraud")
    assert done.exit_code == EXIT_BAD_INPUT, out
    assert "--out is required to score the source" in out and "Traceback" not in out, out
    scored = ["score", "--data", source, "--registry", reg_url, "--name", "fraud", "--out",
              tmp_path / "scored"]
    done, out = run(*scored)
    assert done.exit_code == EXIT_OK and "Scored 3 new partitions (3000 rows)" in out, out
    assert len(pd.read_parquet(tmp_path / "scored")) == 3000
    done, out = run(*scored)  # the ETags it was listed with: nothing fetched, nothing scored
    assert done.exit_code == EXIT_OK and "Scored 0 new partitions" in out, out
    done, out = run(*scored[:-1], tmp_path / "elsewhere", "--executor", "dask")
    assert done.exit_code == EXIT_OK and "Scored 3 new partitions (3000 rows)" in out, out
    assert pd.read_parquet(tmp_path / "elsewhere").drop(columns="scored_at").equals(
        pd.read_parquet(tmp_path / "scored").drop(columns="scored_at"))
    out_url = f"s3://{bucket}/fraud/scored"  # the scored source itself in the bucket
    for executor in ("dask", "local"):  # workers upload what they score; a rerun: nothing
        done, out = run(*scored[:-1], out_url, "--executor", executor)
        assert done.exit_code == EXIT_OK, out
        assert f"Scored {3 if executor == 'dask' else 0} new partitions" in out, out
    keys = s3_env.keys(bucket, "fraud/scored/")
    assert "fraud/scored/_rareflow_scored.json" in keys, keys
    assert not any(k.endswith((".tmp", ".lock")) or "staging" in k for k in keys), keys
    from_s3 = pd.concat([pd.read_parquet(io.BytesIO(s3_env.client().get_object(
        Bucket=bucket, Key=k)["Body"].read())) for k in keys
        if k.startswith("fraud/scored/date=")], ignore_index=True)
    assert from_s3.drop(columns="scored_at").equals(  # (a folder read adds its hive `date`)
        pd.read_parquet(tmp_path / "scored").drop(columns=["scored_at", "date"]))
    row = from_s3.iloc[7]
    done, out = run("audit", row["row_key"], "--scored", out_url, "--registry", reg_url)
    assert done.exit_code == EXIT_OK and f"decided by {row['model_version']}" in out, out
    assert "matches the registry's version today" in out and "role then: champion" in out
    done, out = run("monitor", "--data", source, "--scored", out_url, "--registry", reg_url,
                    "--name", "fraud", "--time-column", "event_time", "--all-matured")
    assert "rows" in out and "Traceback" not in out, out
    # a burst: a new day lands and two scoring runs start at once; the lease lets one score it
    late = make_demo_data(500, positive_rate=0.05, seed=5)
    late["event_time"] = pd.Timestamp("2026-11-04", tz="UTC")
    late.to_csv(batch, index=False)
    done, out = run(*ingest)
    assert done.exit_code == EXIT_OK, out
    env = {**os.environ, **prefect_server.env}
    procs = [subprocess.Popen([*_command(), *map(str, scored[:-1]), out_url], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [EXIT_OK, EXIT_OK], outs
    assert sorted("Scored 1 new partitions" in o for o in outs) == [False, True], outs
    state = json.loads(s3_env.client().get_object(
        Bucket=bucket, Key="fraud/scored/_rareflow_scored.json")["Body"].read())
    assert len(state["partitions"]) == 4


def test_storage_options_of_the_config_file_reach_every_store(prefect_server, s3_env,
                                                            tmp_path, monkeypatch):
    """Check that with the endpoint given only by each config file's `storage_options` (no
    AWS_ENDPOINT_URL), ingest into an S3 source, train on it into an S3 registry (the
    preflight included) and score it on Dask workers all reach the server; and that a
    credential in `storage_options` is refused in one line that does not show it."""
    from tasks.data.demo_tables import make_demo_data

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    bucket = s3_env.new_bucket()
    source, reg_url = f"s3://{bucket}/src", f"s3://{bucket}/registry"
    batch = tmp_path / "batch.csv"
    make_demo_data(2000, positive_rate=0.05, seed=3).to_csv(batch, index=False)
    options = f"storage_options:\n  endpoint_url: {s3_env.endpoint}\n"
    config = tmp_path / "storage.yaml"
    config.write_text(options)
    done, out = run("ingest", "--config", config, "--data", batch, "--source", source,
                    "--name", "fraud")
    assert done.exit_code == EXIT_OK and "Ingested 2000 new rows" in out, out
    done, out = run("train", "--config", config, "--data", source, *TRAIN_FLAGS,
                    "--registry", reg_url, "--name", "fraud", "--min-recall-gate", "0",
                    "--max-normalised-cost-gate", "1")
    assert done.exit_code == EXIT_OK, out
    with configured_storage({"endpoint_url": s3_env.endpoint}):
        meta = open_registry(reg_url, "fraud").verify("v0001")
    assert meta["config"]["storage_options"] == {"endpoint_url": s3_env.endpoint}
    done, out = run("score", "--config", config, "--data", source, "--registry", reg_url,
                    "--name", "fraud", "--out", tmp_path / "scored", "--executor", "dask")
    assert done.exit_code == EXIT_OK and "(2000 rows)" in out, out
    config.write_text(options + f"  secret: {s3_env.secret}\n")
    done, out = run("ingest", "--config", config, "--data", batch, "--source", source,
                    "--name", "fraud")
    assert done.exit_code == EXIT_BAD_INPUT and "storage_options.secret is a credential" in out
    assert s3_env.secret not in out and len(set(out.strip().splitlines())) == 1, out


def test_the_documented_loop_runs(prefect_server, tmp_path):
    """Check that docs/object-storage.md's whole loop against a local S3 server runs as
    written: moto's server, ingest into an s3:// source, train on it, score it on Dask and
    score a labelled file, monitor,
    history (a free port instead of 5555, a folder of the test's instead of /tmp)."""
    from .conftest import VENV_BIN
    from .loopback import run_documented_loop

    env = {k: v for k, v in prefect_server.env.items() if not k.startswith("AWS_")}
    out = run_documented_loop(REPO / "docs" / "object-storage.md",
                              "## The whole loop against a local S3 server", port="5555",
                              server="moto_server", skip=("uv sync",), env=env,
                              tmp_path=tmp_path, venv_bin=VENV_BIN)
    assert "Ingested 5000 new rows into s3://lake/fraud/source" in out, out[-4000:]
    assert "new partitions (5000 rows)" in out, out[-4000:]  # the source scored on Dask
    assert "s3://lake/registry/fraud/versions/v0001/" in out, out[-4000:]  # the reports
    assert "promote" in out.split("Ingested", 1)[1], out[-4000:]  # models history


def _command() -> list[str]:
    script = Path(sys.executable).with_name("rareflow")
    return [str(script)] if script.is_file() else [sys.executable, "-c",
                                                   "from flows.cli import main; main()"]
