"""A sampled training window read on Dask (`strategy.executor: dask` with `sample`): one task
per partition on the workers, the same rows, lineage and first error as the local scan."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from schemas.config import StrategyConfig, TrainingConfig
from schemas.errors import DataError
from tasks.data.window import read_training_window

LABEL = "y"
DAYS = [f"2026-11-0{d}" for d in range(1, 7)]


def partitions(rows_per_day=3000, seed=0) -> list[pd.DataFrame]:
    """Six days of rows, 2 % to 3 % positives, each with its event time."""
    rng = np.random.default_rng(seed)
    frames = []
    for day in DAYS:
        x = rng.normal(size=(rows_per_day, 2))
        y = (rng.random(rows_per_day) < 1 / (1 + np.exp(-(-4.0 + 1.8 * x[:, 0])))).astype(int)
        stamps = pd.Timestamp(day, tz="UTC") + pd.to_timedelta(
            rng.integers(0, 86_400, rows_per_day), unit="s")
        frame = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1],
                              "channel": rng.choice(["web", "pos"], rows_per_day),
                              "event_time": stamps.sort_values(), LABEL: y})
        frames.append(frame)
    return frames


def _source(root, fmt="parquet", rows_per_day=3000):
    for k, frame in enumerate(partitions(rows_per_day)):
        folder = root / f"part-{k}"  # no date= folder: each file's times are read
        folder.mkdir(parents=True)
        if fmt == "parquet":
            frame.to_parquet(folder / "rows.parquet", index=False)
        else:
            frame.to_csv(folder / "rows.csv", index=False)
    return root


def read(data, dask: bool, **options):
    strategy = StrategyConfig(executor="dask", dask_workers=2) if dask else StrategyConfig()
    config = TrainingConfig(data=str(data), label=LABEL, time_column="event_time",
                            strategy=strategy, **options)
    return read_training_window(config, needed=5)


def task_runs(prefix: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=prefix)), limit=200)
    return [r.name for r in runs if r.name.startswith(prefix)]


@pytest.mark.slow
@pytest.mark.parametrize("fmt, window", [("parquet", "4d"), ("csv", "4d"),
                                         ("parquet", "7000rows")])
def test_a_sampled_window_on_dask_is_the_local_one(prefect_harness, tmp_path, fmt, window):
    """Check that `sample: auto` with a 4-day window (or the last 7000 rows) as of the 5th
    day, read on a 2-worker cluster, gives the local scan's rows in the same order (frame,
    times, maturity) and the same lineage (files and sha256, rows per class before and
    after, the rate), and that each partition was a `scan-partition` task
    run."""
    root = _source(tmp_path / "source", fmt)
    options = {"sample": "auto", "sample_rows": 4000, "window": window,
               "as_of": "2026-11-05T12:00:00Z"}
    local = read(root, dask=False, **options)
    before = len(task_runs("scan-partition"))
    spread = read(root, dask=True, **options)
    pd.testing.assert_frame_equal(spread.frame, local.frame)
    pd.testing.assert_series_equal(spread.event_time, local.event_time)
    assert np.array_equal(spread.matured, local.matured)
    assert spread.lineage == local.lineage
    sample = local.lineage["sample"]
    assert 0 < sample["rate"] < 1 and sample["rows_after"]["negative"] < 4000
    # every partition is sent (no folder dates them): a worker finds part-5 after as_of
    assert len(task_runs("scan-partition")) - before == len(DAYS)


@pytest.mark.slow
@pytest.mark.parametrize("schema_file", [False, True])
def test_bad_partitions_on_dask_fail_as_the_local_scan_does(prefect_harness, tmp_path,
                                                            schema_file):
    """Check that with a partition whose columns differ (part-2) and a later corrupt one
    (part-4), the Dask scan fails with the local scan's one-line error, naming part-2 and
    what its schema was compared with (the first partition, or the source's schema file)."""
    import json

    from tasks.data.source_files import SOURCE_FILE, signature

    root = _source(tmp_path / "source", rows_per_day=500)
    if schema_file:  # as `rareflow ingest` records it
        schema = signature(pq.read_schema(root / "part-0" / "rows.parquet"))
        (root / SOURCE_FILE).write_text(json.dumps({"schema": schema}))
    pd.read_parquet(root / "part-2" / "rows.parquet").rename(columns={"x1": "x9"}).to_parquet(
        root / "part-2" / "rows.parquet", index=False)
    (root / "part-4" / "rows.parquet").write_bytes(b"PAR1 half written")
    with pytest.raises(DataError) as local:
        read(root, dask=False, sample=0.5)
    with pytest.raises(DataError) as spread:
        read(root, dask=True, sample=0.5)
    assert str(spread.value) == str(local.value)
    assert "part-2/rows.parquet" in str(local.value)
    assert (SOURCE_FILE if schema_file else "part-0/rows.parquet") in str(local.value)


@pytest.mark.slow
def test_train_with_a_sample_on_dask_from_the_command_line(prefect_harness, tmp_path):
    """Check that `rareflow train --sample auto --executor dask` on a folder source trains on
    the rows the local scan keeps (the version's lineage is the local read's) and that its
    partitions were read by `scan-partition` task runs."""
    from typer.testing import CliRunner

    from flows.cli import app
    from schemas.errors import EXIT_OK
    from tasks.registry.store import Registry

    root = _source(tmp_path / "source", rows_per_day=2000)
    before = len(task_runs("scan-partition"))
    run = CliRunner().invoke(app, [
        "train", "--data", str(root), "--label", LABEL, "--time-column", "event_time",
        "--sample", "auto", "--sample-rows", "4000", "--executor", "dask",
        "--registry", str(tmp_path / "registry"), "--name", "spread", "--model", "logreg",
        "--sampler", "none", "--folds", "3", "--bootstrap-samples-gate", "200"])
    assert run.exit_code == EXIT_OK, run.output
    lineage = Registry(tmp_path / "registry", "spread").metadata("v0001")["lineage"]
    local = read(root, dask=False, sample="auto", sample_rows=4000).lineage
    assert lineage["sample"] == local["sample"] and lineage["files"] == local["files"]
    assert len(task_runs("scan-partition")) - before == len(DAYS)
