"""A sampled training window read on Dask from object storage (S3, Azure, GCS): each worker
fetches its own partitions; the flow process fetches none and gets the local scan's rows."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tasks.data import remote_files
from tests.flows.test_spread_scan import partitions, read, task_runs

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_sampled_window_on_dask_reads_nothing_in_the_flow(prefect_server, cloud):
    """Check that `sample: auto` over six partitions in the bucket, read on a 2-worker local
    cluster, gives the rows and lineage a local read of the same URL gives, that each
    partition the window may use was a task run, and that the flow process fetched no
    partition (its mirror of the source holds no file) until the local read, which fetches
    only the partitions inside the window (the others' footers are read alone)."""
    root = cloud.new_root("source")
    for k, frame in enumerate(partitions(rows_per_day=2000)):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        cloud.put(root, f"part-{k}/rows.parquet", buffer.getvalue())
    options = {"sample": "auto", "sample_rows": 3000, "window": "4d",
               "as_of": "2026-11-05T12:00:00Z"}
    before = len(task_runs("scan-partition"))
    spread = read(root, dask=True, **options)
    mirror = remote_files._LISTED[root]  # the flow's local mirror of the listed source
    assert [p for p in mirror.rglob("*") if p.is_file()] == []
    local = read(root, dask=False, **options)
    # the local read fetches the five partitions it reads: the sixth's footer, read alone,
    # places it outside the window
    assert sorted(p.parent.name for p in mirror.rglob("*.parquet")) == [
        f"part-{k}" for k in range(5)]
    pd.testing.assert_frame_equal(spread.frame, local.frame)
    assert np.array_equal(spread.matured, local.matured)
    assert spread.lineage == local.lineage and spread.lineage["source"] == root
    assert 0 < spread.lineage["sample"]["rate"] < 1
    assert len(task_runs("scan-partition")) - before == 6  # part-5 skipped by its footer
