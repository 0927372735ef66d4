"""Ingest: batches checked against the source's schema, written as daily partitions that a
reader sees whole or not at all, content-addressed so a batch lands once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from schemas.errors import DataError, ValidationFailed
from tasks.data.ingest import check_batch, existing_schema, write_batch
from tasks.data.scan import Selection, resolve_as_of
from tasks.data.source_files import SOURCE_FILE
from tasks.data.window import read_source

AS_OF = resolve_as_of("2025-03-01")


def batch(days: int = 3, n: int = 30, *, start: str = "2025-02-01", seed: int = 0):
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(
        np.sort(rng.integers(0, days * 86_400, n)), unit="s")
    return pd.DataFrame({"ts": ts, "amount": rng.gamma(2, 10, n).round(2),
                         "channel": rng.choice(["pos", "online"], n),
                         "count": rng.integers(0, 5, n), "y": (np.arange(n) % 5 == 0).astype(int)})


def land(df, root, **kw):
    return write_batch(check_batch(df, source=root, as_of=AS_OF, **kw), source=root)


def test_first_batch_sets_the_schema_and_writes_one_partition_per_day(tmp_path):
    """Check that the first batch writes the schema file and date= partitions of its rows."""
    root = tmp_path / "src"
    written = land(batch(), root, time_column="ts")
    assert [w["partition"].split("/")[0] for w in written] == [
        "date=2025-02-01", "date=2025-02-02", "date=2025-02-03"]
    assert all(w["new"] for w in written) and sum(w["rows"] for w in written) == 30
    info = json.loads((root / SOURCE_FILE).read_text())
    assert info["time_column"] == "ts" and info["partition_key"] == "date"
    assert dict(info["schema"])["amount"] == "double"
    back = read_source(str(root), Selection(as_of=AS_OF, label="y", time_column="ts"))
    expected = batch().drop(columns="ts")
    pd.testing.assert_frame_equal(back.frame, expected, check_dtype=False)


def test_same_batch_lands_once(tmp_path):
    """Check that landing the same rows again writes nothing new (content-addressed names)."""
    root = tmp_path / "src"
    land(batch(), root, time_column="ts")
    again = land(batch(), root, time_column="ts")
    assert not any(w["new"] for w in again)
    assert len(list(root.rglob("*.parquet"))) == 3


def test_later_batches_are_cast_to_the_source_types(tmp_path):
    """Check that a later batch with ints where the source has doubles is cast and read back."""
    root = tmp_path / "src"
    land(batch(), root, time_column="ts")
    later = batch(start="2025-02-10", seed=1).assign(amount=lambda d: d.amount.round().astype(int))
    land(later, root)  # the time column comes from the schema file
    window = read_source(str(root), Selection(as_of=AS_OF, label="y", time_column="ts"))
    assert len(window.frame) == 60 and window.frame["amount"].dtype == np.float64
    assert existing_schema(root).time_column == "ts"


@pytest.mark.parametrize("change, message", [
    (lambda d: d.drop(columns="count"), r"column 'count' is missing"),
    (lambda d: d.assign(extra=1), r"column 'extra' is not in the source's schema"),
    (lambda d: d.assign(amount=d.amount.astype(str).where(d.index > 2, "n/a")),
     r"column 'amount' must hold double"),
    (lambda d: d.assign(ts=d.ts.astype(str).where(d.index > 0, "soon")),
     r"column 'ts' must hold dates or times like the source; 1 values are not"),
    (lambda d: d.iloc[:0], r"the batch has no rows"),
])
def test_bad_batches_are_refused_and_nothing_is_written(tmp_path, change, message):
    """Check that a batch that does not fit the source is refused with a table; nothing lands."""
    root = tmp_path / "src"
    land(batch(), root, time_column="ts")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(ValidationFailed, match=message) as info:
        check_batch(change(batch(seed=3, start="2025-02-20")), source=root, time_column=None,
                    as_of=AS_OF)
    assert list(info.value.failures.columns) == ["column", "check", "problem", "count",
                                                 "examples"]
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_first_batch_with_an_empty_column_is_refused(tmp_path):
    """Check that a new source refuses a column whose type its first batch cannot tell."""
    with pytest.raises(ValidationFailed, match="column 'note' is empty in the first batch"):
        check_batch(batch().assign(note=None), source=tmp_path / "new", time_column="ts",
                    as_of=AS_OF)


def test_source_without_time_column_is_dated_by_arrival(tmp_path):
    """Check that without a time column the partition is the arrival day, a usable time key."""
    root = tmp_path / "src"
    written = land(batch().drop(columns="ts"), root, time_column=None)
    assert [w["partition"].split("/")[0] for w in written] == ["date=2025-03-01"]
    window = read_source(str(root), Selection(as_of=AS_OF, label="y", time_column="date",
                                              window="1d"))
    assert len(window.frame) == 30


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    """Check that a temporary file left by a killed writer is removed by the next ingest."""
    root = tmp_path / "src"
    land(batch(), root, time_column="ts")
    leftover = root / "date=2025-02-01" / ".part-999999999-dead.parquet.tmp"
    leftover.write_bytes(b"PAR1 half")
    land(batch(start="2025-02-05", seed=2), root)
    assert not leftover.exists()


def test_csv_source_cannot_take_parquet_batches(tmp_path):
    """Check that a folder of CSV partitions is refused (ingest writes Parquet)."""
    root = tmp_path / "csv"
    (root / "date=2025-01-01").mkdir(parents=True)
    batch().to_csv(root / "date=2025-01-01" / "p.csv", index=False)
    with pytest.raises(DataError, match="holds CSV partitions"):
        check_batch(batch(), source=root, time_column="ts", as_of=AS_OF)


def test_a_batch_of_another_type_is_refused_not_cast(tmp_path):
    """Check that numbers landing in a source whose column holds text are refused (they were
    silently cast to text), while ints into a double column still widen."""
    root = tmp_path / "src"
    land(batch().assign(count=lambda d: d["count"].astype(str)), root, time_column="ts")
    with pytest.raises(ValidationFailed, match=r"column 'count' must hold string values like "
                                               r"the source, not int64"):
        check_batch(batch(seed=3, start="2025-02-20"), source=root, time_column=None,
                    as_of=AS_OF)


def test_two_first_batches_cannot_both_write_the_schema(tmp_path):
    """Check that when two first batches of different types are checked against an empty
    source at once, the second to write is refused and writes nothing."""
    root = tmp_path / "src"
    first = check_batch(batch(), source=root, time_column="ts", as_of=AS_OF)
    second = check_batch(batch(seed=2).assign(count=lambda d: d["count"].astype(str)),
                         source=root, time_column="ts", as_of=AS_OF)
    write_batch(first, source=root)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(DataError, match="another batch created source .* meanwhile with other "
                                        "column types; nothing of this batch was written"):
        write_batch(second, source=root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert existing_schema(root).columns["count"] == "int64"


def test_a_source_that_is_a_file_is_a_one_line_error(tmp_path):
    """Check that --source naming a file is refused with what to give instead."""
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"is a file; --source takes the folder"):
        check_batch(batch(), source=path, time_column="ts", as_of=AS_OF)
