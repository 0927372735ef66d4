"""Ingest under SIGKILL: a reader never sees half a partition.

A writer process lands a ten-day batch in a source and is killed with SIGKILL, either at a named
point (it patches the file operations ingest calls to kill itself there: no hook in production
code) or after a time-staggered delay. After each kill, a reader of the source must see only
complete partitions (every visible file reads, and holds exactly its day's rows), and landing
the same batch again must complete it (content-addressed names) and clear the dead writer's
temporary files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(r'''
    import os, signal, sys
    import pandas as pd
    import pyarrow.parquet as pq
    import tasks.data.ingest as ingest
    from tasks.data.scan import resolve_as_of

    batch_path, root, point = sys.argv[1], sys.argv[2], sys.argv[3]
    df = pd.read_parquet(batch_path)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_write, real_rename = pq.write_table, os.rename
    calls = {"rename": 0}
    if point == "mid-write":
        def write(table, where, **kw):
            real_write(table, where, **kw)
            size = os.path.getsize(where)
            with open(where, "r+b") as fh:
                fh.truncate(size // 2)
            die()
        ingest.pq.write_table = write
    elif point == "before-rename":
        ingest.os.rename = lambda src, dst: die()
    elif point == "after-first-rename":
        def rename(src, dst):
            real_rename(src, dst)
            calls["rename"] += 1
            if calls["rename"] == 1:
                die()
        ingest.os.rename = rename
    elif point == "before-schema-file":
        ingest.write_bytes_atomic = lambda *a, **k: die()
    print("ready", flush=True)
    import time; started = time.perf_counter()
    batch = ingest.check_batch(df, source=root, time_column="event_time",
                               as_of=resolve_as_of("2025-02-01"))
    ingest.write_batch(batch, source=root)
    print(f"done in {time.perf_counter() - started:.2f} s", flush=True)
''')


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Ten days of a stream (5,000 rows a day) as one batch file, and its rows per day."""
    from tasks.data.demo_tables import make_stream

    base = tmp_path_factory.mktemp("crash-batch")
    df = make_stream(2, rows_per_day=5_000, drift_week=None, seed=5).iloc[: 10 * 5_000]
    path = base / "batch.parquet"
    df.to_parquet(path, index=False)
    per_day = df.assign(day=df["event_time"].dt.strftime("%Y-%m-%d"))
    return path, per_day


def write(batch_path: Path, root: Path, point: str, *, kill_after: float | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(batch_path), str(root), point],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if kill_after is not None:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def assert_only_whole_partitions(root: Path, per_day: pd.DataFrame) -> int:
    """Every visible partition reads and holds exactly its day's rows; returns how many."""
    from tasks.data.scan import Selection, resolve_as_of
    from tasks.data.source_files import resolve_source
    from tasks.data.window import read_source

    if not (root / "_rareflow_source.json").is_file() or not any(root.rglob("part-*.parquet")):
        return 0
    files = resolve_source(str(root)).files
    for path in files:
        day = path.parent.name.removeprefix("date=")
        got = pd.read_parquet(path)
        want = per_day[per_day["day"] == day].drop(columns="day").reset_index(drop=True)
        pd.testing.assert_frame_equal(got.astype(object).where(got.notna(), None),
                                      want.astype(object).where(want.notna(), None))
    window = read_source(str(root), Selection(as_of=resolve_as_of("2025-02-01"),
                                              label="is_fraud", time_column="event_time"))
    assert len(window.frame) == 5_000 * len(files)
    return len(files)


@pytest.mark.parametrize("point", ["mid-write", "before-rename", "after-first-rename",
                                   "before-schema-file"])
def test_kill_at_a_named_point_leaves_whole_partitions(batch, tmp_path, point):
    """Check that a writer killed at each point leaves only whole partitions, and that landing
    the batch again completes it and removes the dead writer's temporary file."""
    batch_path, per_day = batch
    root = tmp_path / "source"
    code, _, err = write(batch_path, root, point)
    assert code == -signal.SIGKILL, err
    visible = assert_only_whole_partitions(root, per_day)
    assert visible == (1 if point == "after-first-rename" else 0)
    code, out, err = write(batch_path, root, "none")
    assert code == 0 and "done" in out, err
    assert assert_only_whole_partitions(root, per_day) == 10
    assert not list(root.rglob(".part-*"))


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.5])
def test_kill_at_any_time_leaves_whole_partitions(batch, tmp_path, delay):
    """Check that a writer killed after a staggered delay leaves only whole partitions."""
    batch_path, per_day = batch
    root = tmp_path / "source"
    write(batch_path, root, "none", kill_after=delay)
    assert_only_whole_partitions(root, per_day)
    code, _, err = write(batch_path, root, "none")
    assert code == 0, err
    assert assert_only_whole_partitions(root, per_day) == 10
