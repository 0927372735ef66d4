"""Data sources: which files, which rows of a window as of a time, label maturity, lineage, and
the one-line errors of bad sources (each naming the partition and what to do)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas.config import TrainingConfig
from schemas.errors import ConfigError, DataError
from tasks.data.scan import Selection, resolve_as_of
from tasks.data.source_files import hive_keys, resolve_source
from tasks.data.window import (
    check_window_classes,
    class_counts,
    read_source,
    read_training_window,
)

T0 = pd.Timestamp("2025-01-01", tz="UTC")


def day_frame(day: int, n: int = 20, *, seed: int = 0) -> pd.DataFrame:
    """``n`` rows on day ``day`` after T0: an event time, a label time 3 days later, x, y."""
    rng = np.random.default_rng([seed, day])
    ts = T0 + pd.Timedelta(days=day) + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)),
                                                         unit="s")
    return pd.DataFrame({"ts": ts, "x": rng.normal(size=n), "cat": rng.choice(["a", "b"], n),
                         "y": (np.arange(n) % 4 == 0).astype(int),
                         "label_at": ts + pd.Timedelta(days=3)})


def write_days(root: Path, days, *, fmt: str = "parquet", n: int = 20) -> Path:
    for day in days:
        folder = root / f"date={(T0 + pd.Timedelta(days=day)).date()}"
        folder.mkdir(parents=True, exist_ok=True)
        df = day_frame(day, n)
        if fmt == "parquet":
            df.to_parquet(folder / "part-0.parquet", index=False)
        else:
            df.assign(ts=df.ts.astype(str), label_at=df.label_at.astype(str)).to_csv(
                folder / f"part-0.{fmt}", index=False)
    return root


def sel(as_of, **kw) -> Selection:
    return Selection(as_of=resolve_as_of(as_of), label="y", **kw)


@pytest.fixture
def source(tmp_path) -> Path:
    return write_days(tmp_path / "src", range(10))


def test_label_maturing_one_second_after_as_of_is_excluded(tmp_path):
    """Check that a label maturing exactly at as_of counts and one maturing 1 s later does not."""
    as_of = T0 + pd.Timedelta(days=5)
    df = pd.DataFrame({"ts": [T0, T0, T0 + pd.Timedelta(days=6)], "x": [1.0, 2.0, 3.0],
                       "y": [1, 0, 1],
                       "label_at": [as_of, as_of + pd.Timedelta(seconds=1), as_of]})
    path = tmp_path / "one.parquet"
    df.to_parquet(path, index=False)
    window = read_source(str(path), sel(as_of, time_column="ts", label_time_column="label_at"))
    assert window.frame["x"].tolist() == [1.0]  # row 2 immature, row 3 after as_of
    assert list(window.frame.columns) == ["x", "y"]  # time columns are not features
    delayed = read_source(str(path), sel(as_of + pd.Timedelta(days=2), time_column="ts",
                                         label_time_column="label_at", label_delay_days=2))
    assert delayed.frame["x"].tolist() == [1.0, 3.0]  # row 2 still matures 1 s too late


def test_delay_counts_from_the_event_time_without_a_label_time(source):
    """Check that label_delay_days alone matures labels that many days after the event time."""
    window = read_source(str(source), sel(T0 + pd.Timedelta(days=10), time_column="ts",
                                          label_delay_days=3))
    times = pd.to_datetime(window.lineage["time_range"])
    assert times[1] <= T0 + pd.Timedelta(days=7)
    assert window.lineage["rows"] == 7 * 20


def test_time_window_reads_only_its_partitions(source):
    """Check that a 3-day window keeps the rows in (as_of - 3d, as_of] and skips other files."""
    as_of = T0 + pd.Timedelta(days=8, hours=12)
    window = read_source(str(source), sel(as_of, time_column="ts", window="3d"))
    lin = window.lineage
    first, last = pd.to_datetime(lin["time_range"])
    assert first > as_of - pd.Timedelta(days=3) and last <= as_of
    assert [f["path"] for f in lin["files"]] == [f"date=2025-01-{d:02d}/part-0.parquet"
                                                 for d in (6, 7, 8, 9)]
    assert lin["files_skipped"] == 6  # footer statistics show they are outside
    assert all(len(f["sha256"]) == 64 for f in lin["files"])
    assert lin["rows"] == len(window.frame) == sum(f["rows"] for f in lin["files"])
    assert sum(lin["class_counts"].values()) == lin["rows"]


def test_partition_key_as_time_column(source):
    """Check that a hive key named as the time column dates the rows and prunes by name."""
    window = read_source(str(source), sel(T0 + pd.Timedelta(days=4), time_column="date",
                                          window="2d"))
    assert window.lineage["time_range"] == ["2025-01-04T00:00:00+00:00",
                                            "2025-01-05T00:00:00+00:00"]
    assert len(window.frame) == 40 and "date" not in window.frame.columns
    assert window.lineage["files_skipped"] == 8


def test_last_rows_window_takes_the_latest_rows(source):
    """Check that a window of N rows keeps the N latest matured rows, in source order."""
    as_of = T0 + pd.Timedelta(days=20)
    full = read_source(str(source), sel(as_of, time_column="ts"))
    last = read_source(str(source), sel(as_of, time_column="ts", window="30rows"))
    pd.testing.assert_frame_equal(last.frame, full.frame.tail(30).reset_index(drop=True))


@pytest.mark.parametrize("fmt", ["csv", "csv.gz"])
def test_csv_partitions_and_globs(tmp_path, fmt):
    """Check that CSV and gzipped CSV partitions read like Parquet, also through a glob."""
    root = write_days(tmp_path / "csv", range(4), fmt=fmt)  # pandas gzips a .gz name
    if fmt == "csv.gz":
        assert all(gzip.decompress(p.read_bytes())[:2] == b"ts" for p in root.rglob("*.csv.gz"))
    as_of = T0 + pd.Timedelta(days=10)
    by_dir = read_source(str(root), sel(as_of, time_column="ts", label_time_column="label_at"))
    by_glob = read_source(str(root / "date=*" / f"*.{fmt}"),
                          sel(as_of, time_column="ts", label_time_column="label_at"))
    assert len(by_dir.frame) == 80 and by_glob.lineage["kind"] == "glob"
    pd.testing.assert_frame_equal(by_dir.frame, by_glob.frame)


def test_same_as_of_gives_same_rows_and_lineage_after_new_data(source):
    """Check that the same as_of gives the same rows, order and files after later data lands."""
    s = sel(T0 + pd.Timedelta(days=8), time_column="ts", window="5d", label_time_column="label_at")
    before = read_source(str(source), s)
    write_days(source, range(10, 14))
    after = read_source(str(source), s)
    pd.testing.assert_frame_equal(before.frame, after.frame)
    assert before.lineage["files"] == after.lineage["files"]


def test_single_file_without_options_is_read_as_before(tmp_path):
    """Check that a plain file keeps every column and records its sha256 and class counts."""
    path = tmp_path / "plain.csv"
    day_frame(0).to_csv(path, index=False)
    window = read_source(str(path), sel(None))
    assert list(window.frame.columns) == ["ts", "x", "cat", "y", "label_at"]
    assert window.lineage["files"][0]["path"] == "plain.csv"
    assert window.lineage["class_counts"] == {"0": 15, "1": 5}


def test_hidden_and_temporary_files_are_not_data(source):
    """Check that names starting with '.' or '_' (temporaries, schema file) are skipped."""
    (source / "date=2025-01-03" / ".part-123-x.parquet.tmp").write_bytes(b"PAR1 half")
    (source / "_rareflow_notes.parquet").write_bytes(b"junk")
    files = resolve_source(str(source)).files
    assert len(files) == 10 and all(not p.name.startswith((".", "_")) for p in files)
    assert hive_keys("date=2025-01-03/x=1/p.parquet") == {"date": "2025-01-03", "x": "1"}


def test_monitoring_keeps_rows_awaiting_labels(source):
    """Check that keep_unmatured returns every window row with maturity and partition of each."""
    as_of = T0 + pd.Timedelta(days=6)
    window = read_source(str(source), sel(as_of, time_column="ts", window="6d",
                                          label_time_column="label_at", keep_unmatured=True))
    assert len(window.frame) == 6 * 20
    assert window.matured.sum() == window.lineage["rows"] == 3 * 20
    assert (window.maturity_time[window.matured] <= as_of).all()
    assert window.files_of(~window.matured) == [f"date=2025-01-{d:02d}/part-0.parquet"
                                                for d in (4, 5, 6)]


# -- bad sources: one line, naming the partition and what to do ---------------------------------
def _half_written(root: Path) -> None:
    good = root / "date=2025-01-05" / "part-0.parquet"
    (root / "date=2025-01-05" / "part-1.parquet").write_bytes(good.read_bytes()[:300])


def _other_schema(root: Path) -> None:
    df = day_frame(5).assign(x=lambda d: d.x.astype(str))
    df.to_parquet(root / "date=2025-01-05" / "part-0.parquet", index=False)


@pytest.mark.parametrize("break_it, as_of, kw, message", [
    (None, T0 + pd.Timedelta(days=40), {"window": "7d"},
     r"no rows in the window \(last 7d up to 2025-02-10.*newest row with a matured label is "
     r"from 2025-01-10.*partition 'date=2025-01-10/part-0.parquet'.*widen the window beyond "
     r"30d, pass an as_of within its data.*ingest newer data"),
    (None, T0 - pd.Timedelta(days=3), {"window": "7d"},
     r"before its oldest rows .*date=2025-01-01.*move --as-of later"),
    (None, T0 + pd.Timedelta(days=2), {"label_time_column": "label_at"},
     r"none of the .* rows .* has a matured label.*move --as-of later"),
    (_half_written, T0 + pd.Timedelta(days=9), {},
     r"partition 'date=2025-01-05/part-1.parquet' .* not a readable Parquet file .*"
     r"half-written.*rareflow ingest"),
    (_other_schema, T0 + pd.Timedelta(days=9), {},
     r"partition 'date=2025-01-05/part-0.parquet' .* does not match the source's schema .*"
     r"column 'x' is string, not double.*fix or remove that partition"),
    (None, T0 + pd.Timedelta(days=9), {"label_time_column": "nope"},
     r"partition 'date=2025-01-01/part-0.parquet' .* has no column 'nope'"),
])
def test_bad_sources_are_one_line_errors(source, break_it, as_of, kw, message):
    """Check that empty windows, unmatured windows and broken partitions raise a clear DataError."""
    if break_it:
        break_it(source)
    with pytest.raises(DataError, match=message) as info:
        read_source(str(source), sel(as_of, time_column="ts", **kw))
    assert "\n" not in str(info.value)


def test_stale_source_says_how_old_its_newest_matured_rows_are(source):
    """Check that a training window left empty because the source's data ends before it names
    the newest row whose label had matured (not merely the newest row), the window, as_of and
    the three ways out, as one line with exit status 2."""
    config = TrainingConfig(data=str(source), label="y", time_column="ts", window="2d",
                            label_time_column="label_at", label_delay_days=5,
                            as_of="2025-01-14")
    with pytest.raises(DataError) as info:
        read_training_window(config, needed=1)
    text = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in text
    # rows run to 2025-01-10, but labels mature 3 + 5 days after the event: to 2025-01-05 only
    assert "newest row with a matured label is from 2025-01-05T" in text, text
    assert "'date=2025-01-05/part-0.parquet'" in text
    assert "last 2d up to 2025-01-14T00:00:00+00:00" in text and "8 days before as_of" in text
    assert ("widen the window beyond 8d" in text and "--as-of 2025-01-06" in text
            and "rareflow ingest" in text)


def test_as_of_in_the_future_is_refused():
    """Check that an as_of later than now is a configuration error naming it."""
    with pytest.raises(ConfigError, match=r"as_of 2999-01-01.* is in the future.*past time"):
        resolve_as_of("2999-01-01")
    now = pd.Timestamp("2026-01-01T00:00:00Z")
    assert resolve_as_of(None, now=now) == now


def test_missing_or_empty_source(tmp_path):
    """Check that a missing path and a folder without data files are one-line errors."""
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no CSV or Parquet file.*rareflow ingest"):
        resolve_source(str(tmp_path / "empty"))


def test_window_with_too_few_positives_is_refused(source):
    """Check that a window whose rare class cannot fill the split names the window and the fix."""
    window = read_source(str(source), sel(T0 + pd.Timedelta(days=10), time_column="ts",
                                          window="1d"))
    with pytest.raises(DataError, match=r"window of source .* holds 5 rows of class '1'.*"
                                        r"need at least 7.*widen --window"):
        check_window_classes(window.lineage, label="y", positive="1", needed=7)
    check_window_classes(window.lineage, label="y", positive="1", needed=5)


def test_class_counts_as_text():
    """Check that label values are counted as text (1.0 as '1') with missing ones apart."""
    assert class_counts(pd.Series([1.0, 0.0, 1.0, np.nan])) == {"0": 1, "1": 2, "null": 1}


def test_mixed_formats_are_refused(tmp_path):
    """Check that a source mixing Parquet and CSV partitions is refused."""
    root = write_days(tmp_path / "mixed", range(2))
    write_days(root / "more", range(2, 4), fmt="csv")
    shutil.rmtree(root / "more" / "date=2025-01-04")
    with pytest.raises(DataError, match="mixes Parquet and CSV"):
        read_source(str(root), sel(T0 + pd.Timedelta(days=9), time_column="ts"))


def test_since_keeps_rows_from_it_and_skips_older_partitions(source):
    """Check that `since` keeps rows at or after it (inclusive), inside the window, and that
    partitions wholly before it are not opened."""
    as_of = T0 + pd.Timedelta(days=10)
    full = read_source(str(source), sel(as_of, time_column="ts", window="8d"))
    since = pd.to_datetime(full.lineage["time_range"][0]) + pd.Timedelta(days=5)
    since = full.event_time[full.event_time >= since].min()  # exactly one row's time
    window = read_source(str(source), sel(as_of, time_column="ts", window="8d", since=since))
    assert window.event_time.min() == since
    assert len(window.frame) == int((full.event_time >= since).sum())
    assert window.lineage["since"] == since.isoformat()
    assert window.lineage["files_skipped"] > full.lineage["files_skipped"]
    assert "from " + since.isoformat() in sel(as_of, since=since).describe()


def _training_config(source, **kw) -> TrainingConfig:
    return TrainingConfig(data=str(source), label="y", time_column="ts", window="9d",
                          as_of=str(T0 + pd.Timedelta(days=10)), **kw)


def test_training_after_a_drift_falls_back_to_the_window_when_too_few(source, caplog):
    """Check that a retraining's `since` is used when its rows hold enough of each class, and
    that the whole window is used (and the log says why) when they do not."""
    since = str(T0 + pd.Timedelta(days=7))
    recent = read_training_window(_training_config(source, since=since), needed=10)
    assert recent.lineage["rows"] == 3 * 20 and recent.lineage["since"] is not None
    with caplog.at_level("WARNING"):
        whole = read_training_window(_training_config(source, since=since), needed=20)
    assert whole.lineage["rows"] == 9 * 20 and whole.lineage["since"] is None
    assert "whole window, not only the rows from" in caplog.text
    with pytest.raises(ConfigError, match="since .* needs a time column"):
        read_training_window(TrainingConfig(data=str(source), label="y", since=since), needed=1)


YEARS = [f"{year}-07-01" for year in range(1997, 2003)]


def write_years(root: Path, *, key: str = "date", n: int = 40) -> Path:
    """A source laid out by year (``date=1997-07-01/`` ... ``date=2002-07-01/``), no time
    column: a tiny Parquet file per year whose ``x`` says its year."""
    for day in YEARS:
        folder = root / f"{key}={day}"
        folder.mkdir(parents=True)
        pd.DataFrame({"x": np.full(n, float(day[:4])), "y": (np.arange(n) % 4 == 0).astype(int)}
                     ).to_parquet(folder / "part-0.parquet", index=False)
    return root


@pytest.mark.parametrize("key", ["date", "dt"])
def test_partition_dates_bound_as_of_without_a_time_column(tmp_path, key):
    """Check that without a time column a partition's date stands in for its rows' time:
    as_of 2000-01-01 reads exactly the partitions dated before it, and the lineage lists
    those and says which key dated them."""
    root = write_years(tmp_path / "years", key=key)
    window = read_source(str(root), sel("2000-01-01"))
    assert sorted(window.frame["x"].unique()) == [1997.0, 1998.0, 1999.0]
    lineage = window.lineage
    assert [f["path"] for f in lineage["files"]] == [f"{key}={d}/part-0.parquet"
                                                     for d in YEARS[:3]]
    assert lineage["files_skipped"] == 3 and lineage["partition_date_key"] == key
    assert lineage["time_range"] == ["1997-07-01T00:00:00+00:00", "1999-07-01T00:00:00+00:00"]
    on_the_day = read_source(str(root), sel("1999-07-01"))  # a partition dated at as_of
    assert sorted(on_the_day.frame["x"].unique()) == [1997.0, 1998.0, 1999.0]
    window = read_source(str(root), sel("2002-12-31", window="800d"))  # and a time window
    assert sorted(window.frame["x"].unique()) == [2001.0, 2002.0]


def test_as_of_or_window_without_any_time_is_refused(tmp_path):
    """Check that as_of or a time window on a source with neither a time column nor dated
    partitions is refused with one line naming what to set; a dated source, a time column,
    label times (for as_of) or a window of rows are accepted."""
    from tasks.data.window import check_time_options

    plain = tmp_path / "plain.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}).to_parquet(plain, index=False)
    folders = tmp_path / "folders" / "region=eu"
    folders.mkdir(parents=True)
    shutil.copy(plain, folders / "part-0.parquet")
    dated = write_years(tmp_path / "years")

    def check(data, **kw):
        check_time_options(TrainingConfig(data=str(data), label="y", **kw))

    for data in (plain, folders.parent):
        for kw, named in (({"as_of": "2000-01-01"}, "as_of 2000-01-01"),
                          ({"window": "90d"}, "window 90d")):
            with pytest.raises(ConfigError, match=f"^{named} needs each row's time.*no time "
                               "column and no dated partitions: set --time-column"):
                check(data, **kw)
    check(dated, as_of="2000-01-01", window="90d")
    check(plain, as_of="2000-01-01", window="90d", time_column="ts")
    check(plain, as_of="2000-01-01", label_time_column="label_at")
    check(plain, window="100rows")
    check(plain)


def test_a_remote_folder_source_fetches_only_the_partitions_it_reads(tmp_path):
    """Check that a source at a URL (fsspec's in-memory filesystem standing in for S3) is
    listed, not copied: a 3-day window fetches only the `date=` partitions it reads, gives the
    rows and lineage the same folder gives on local disk, and a second read fetches nothing."""
    import uuid

    import fsspec

    from tasks.data.ingest import check_batch, write_batch

    local = tmp_path / "src"
    frame = pd.concat([day_frame(d) for d in range(10)], ignore_index=True)
    write_batch(check_batch(frame, source=local, time_column="ts",
                            as_of=resolve_as_of(T0 + pd.Timedelta(days=20))), source=local)
    url = f"memory://rf-{uuid.uuid4().hex}/src"
    fs = fsspec.filesystem("memory")
    fs.put(str(local), url.split("://", 1)[1], recursive=True)
    chosen = sel(T0 + pd.Timedelta(days=8, hours=12), time_column="ts", window="3d")
    here, there = read_source(str(local), chosen), read_source(url, chosen)
    files = [f["path"] for f in there.lineage["files"]]
    assert files == [f["path"] for f in here.lineage["files"]] and len(files) == 4
    assert there.frame.equals(here.frame) and there.lineage["source"] == url
    mirror = resolve_source(url).root
    fetched = sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*.parquet"))
    assert fetched == files  # the other 6 days never left the store
    before = {p: p.stat().st_mtime_ns for p in mirror.rglob("*.parquet")}
    read_source(url, chosen)
    assert {p: p.stat().st_mtime_ns for p in mirror.rglob("*.parquet")} == before
