"""How current a data source is, as of a time: its newest row whose label had matured (when a
training window holds none, the error says how stale the source is and what to do), and the
newest row it holds at all (what a run started by a burst of arrivals trains as of).

Files are visited newest first, by the time span their name or Parquet footer guarantees, and
only their time and label columns are read, until no file left can hold a newer row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from schemas.errors import DataError
from tasks.data.labels import event_times, matured_mask, utc
from tasks.data.scan import Selection, SourceReader, iso
from tasks.data.source_files import SourceFiles, hive_keys, is_parquet
from tasks.data.tables import PARQUET_SUFFIXES, load_table


@dataclass(frozen=True)
class Newest:
    """The newest qualifying row of a source: its event time and the file holding it."""

    time: pd.Timestamp
    partition: str


def _aux(path: Path, columns: list[str]) -> pd.DataFrame:
    """Only the columns that say when and whether, of one file."""
    if path.name.lower().endswith(PARQUET_SUFFIXES) or is_parquet(path):
        parquet = pq.ParquetFile(path)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        return parquet.read(columns=present).to_pandas()
    rows = load_table(path)
    return rows[[c for c in columns if c in rows.columns]]


def _newest_in(path: Path, rel: str, sel: Selection, *, matured: bool) -> pd.Timestamp | None:
    aux = _aux(path, sel.aux_columns).reset_index(drop=True)
    column, keys = sel.time_column, hive_keys(rel)
    if column in aux.columns:
        times = event_times(aux[column], column=column, where=f"partition {rel!r}")
    elif column in keys:
        times = pd.Series(utc(keys[column]), index=pd.RangeIndex(len(aux)))
    else:
        return None  # reading the window reports the missing column
    keep = (times <= sel.as_of).to_numpy()
    if matured:
        keep &= matured_mask(aux, label_time_column=sel.label_time_column,
                             label_available_column=sel.label_available_column,
                             delay_days=sel.label_delay_days, as_of=sel.as_of,
                             event_times=times)
    return times[keep].max() if keep.any() else None


def newest_row(files: SourceFiles, sel: Selection, *, matured: bool) -> Newest | None:
    """The newest row of a source up to ``sel.as_of`` (with ``matured``: whose label had
    matured by then), ignoring the window; None without a time column or such a row."""
    if not sel.time_column:
        return None
    reader = SourceReader(files, sel)
    order = []
    for path in files.files:
        rel = files.rel(path)
        bounds = reader.known_bounds(path, rel)
        if bounds is None or bounds[0] <= sel.as_of:
            order.append((bounds[1] if bounds else None, path, rel))
    # files whose span is unknown first, then the newest upper bound first
    order.sort(key=lambda item: (item[0] is not None,
                                 -item[0].value if item[0] is not None else 0))
    best = None
    for upper, path, rel in order:
        if upper is not None and best is not None and upper <= best.time:
            break
        newest = _newest_in(files.local(path), rel, sel, matured=matured)
        if newest is not None and (best is None or newest > best.time):
            best = Newest(newest, rel)
    return best


def stale_source_error(files: SourceFiles, sel: Selection) -> DataError | None:
    """The error for a training window left empty because the source's data (with matured
    labels) ends before the window starts; None when that is not why it is empty."""
    if sel.start is None or sel.keep_unmatured:
        return None
    newest = newest_row(files, replace(sel, window=None, since=None), matured=True)
    if newest is None or newest.time > sel.start:
        return None
    days = int((sel.as_of - newest.time) / pd.Timedelta(days=1))
    return DataError(
        f"source {files.spec!r} holds no rows in the window ({sel.describe()}): its newest row "
        f"with a matured label is from {iso(newest.time.floor('s'))} (partition "
        f"{newest.partition!r}), {days} days before as_of {iso(sel.as_of)}; widen the window "
        f"beyond {days}d, pass an as_of within its data (e.g. --as-of "
        f"{newest.time.ceil('D').date()}), or ingest newer data with `rareflow ingest`")


def newest_arrival(files: SourceFiles, *, time_column: str | None,
                   now: pd.Timestamp) -> pd.Timestamp:
    """The time a source's data reaches at ``now``: its newest row's event time (to the
    second, at most ``now``), or ``now`` when rows carry no time."""
    newest = newest_row(files, Selection(as_of=now, time_column=time_column), matured=False)
    return now if newest is None else min(now, newest.time.ceil("s"))
