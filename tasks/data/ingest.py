"""Landing a batch in a data source: checked against the source's schema, written as new
partitions atomically, announced with ``rareflow.data.arrived``.

The source's schema is ``_rareflow_source.json`` at its root: the first batch writes it (column
names and Arrow types, the time column, the partition key), and every later batch must have
exactly those columns, with values that cast to those types without loss. A folder of
partitions written by something else, without that file, is held to its newest Parquet
file's schema.

Layout: ``<source>/date=YYYY-MM-DD/part-<sha256 prefix>.parquet``, one file per UTC day of the
batch's time column (or the arrival day, for a source without one). Each file is written under
a hidden temporary name (readers skip names starting with '.'), flushed to disk, and renamed
into place, so a reader sees a partition whole or not at all. Names are the content's hash:
landing the same rows again writes nothing, and re-running a batch that was interrupted writes
only the days that are missing. In object storage (``s3://bucket/prefix``) the same layout is
written with put-if-absent instead of a rename (:mod:`tasks.data.object_source`).
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import DataError, ValidationFailed
from tasks.data import object_source
from tasks.data.labels import parse_times
from tasks.data.scan import iso
from tasks.data.source_files import (
    SOURCE_FILE,
    arrow_schema,
    first_line,
    resolve_source,
    signature,
    source_info,
    source_path,
)
from tasks.data.validation import failures_table
from tasks.data.value_checks import failure as _failure
from tasks.runtime import events
from tasks.runtime.durable_files import dumps, fsync_dir, sha256_file, write_bytes_atomic
from tasks.runtime.object_store_api import is_remote

logger = logging.getLogger(__name__)

PARTITION_KEY = "date"


@dataclass
class SourceSchema:
    """What a batch must look like to land in a source."""

    arrow: pa.Schema
    time_column: str | None
    origin: str  # where it came from: the schema file, a partition, or this (first) batch
    new: bool = False

    @property
    def columns(self) -> dict[str, str]:
        return signature(self.arrow)


def schema_info(schema: SourceSchema) -> dict:
    """The schema file's content: readable column types and the exact Arrow schema."""
    return {"format": "parquet", "partition_key": PARTITION_KEY,
            "time_column": schema.time_column,
            "schema": [[k, v] for k, v in schema.columns.items()],
            "arrow_schema": base64.b64encode(schema.arrow.serialize().to_pybytes()).decode()}


def existing_schema(root: Path | str) -> SourceSchema | None:
    """The schema of a source (its schema file, else, in a local folder, its newest Parquet
    partition)."""
    info = (object_source.read_source_info(object_source.source_store(str(root)))
            if is_remote(root) else source_info(root))
    if info:
        return SourceSchema(arrow_schema(info), info.get("time_column"), SOURCE_FILE)
    if is_remote(root) or not root.is_dir():
        return None
    try:
        files = resolve_source(str(root)).files
    except DataError:
        return None
    parquet = [f for f in files if f.name.lower().endswith((".parquet", ".pq"))]
    if len(parquet) != len(files):
        raise DataError(f"source {str(root)!r} holds CSV partitions; `rareflow ingest` writes "
                        "Parquet: land batches in a new source folder")
    newest = max(parquet, key=lambda p: p.relative_to(root).as_posix())
    try:
        arrow = pq.read_schema(newest).remove_metadata()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"partition {newest.relative_to(root).as_posix()!r} of source "
                        f"{str(root)!r} is unreadable ({first_line(exc)}): remove it") from exc
    return SourceSchema(arrow, None, f"partition {newest.relative_to(root).as_posix()}")


@dataclass
class Batch:
    """A checked batch: its rows as an Arrow table of the source's types, by partition."""

    table: pa.Table
    schema: SourceSchema
    days: list[str] = field(default_factory=list)  # the UTC day of every row
    failures: list[dict] = field(default_factory=list)


def _bad_values(values: pd.Series, arrow_type: str) -> tuple[int, list]:
    """How many values of a column do not convert to a type, and a few of them."""
    present = values.dropna()
    if arrow_type.startswith(("double", "float", "int", "uint")):
        bad = present[pd.to_numeric(present, errors="coerce").isna()]
        return len(bad), bad.astype(str).unique()[:3].tolist()
    return len(present), present.astype(str).unique()[:3].tolist()


def _cast(df: pd.DataFrame, schema: SourceSchema) -> tuple[pa.Table | None, list[dict]]:
    """The batch as an Arrow table with the source's column types, or the failures."""
    names = schema.arrow.names
    failures = [_failure(c, "column_in_source", f"column {c!r} is missing; the source has "
                         f"{names[:20]}") for c in names if c not in df.columns]
    failures += [_failure(c, "column_in_source", f"column {c!r} is not in the source's schema "
                          f"(from {schema.origin}); drop it or start a new source")
                 for c in map(str, df.columns) if c not in names]
    if failures:
        return None, failures
    arrays = []
    for f in schema.arrow:
        values = df[f.name]
        if pa.types.is_timestamp(f.type) and not pd.api.types.is_datetime64_any_dtype(values):
            times = parse_times(values)
            bad = times.isna() & values.notna()
            if bad.any():
                failures.append(_failure(f.name, "type", f"column {f.name!r} must hold dates or "
                                         f"times like the source; {int(bad.sum())} values are not",
                                         int(bad.sum()), values[bad].astype(str).unique()[:3]))
                continue
            values = times if f.type.tz else times.dt.tz_localize(None)
        try:
            given = pa.array(values, from_pandas=True)
            if type_kind(given.type) not in (type_kind(f.type), "null"):
                count, bad = _bad_values(values, str(f.type))
                failures.append(_failure(f.name, "type", f"column {f.name!r} must hold {f.type} "
                                         f"values like the source, not {given.type}: send "
                                         f"{f.type} values or land it in a new source",
                                         max(count, 1), bad))
                continue
            arrays.append(given.cast(f.type, safe=True))
        except (pa.ArrowException, ValueError, TypeError) as exc:
            count, bad = _bad_values(df[f.name], str(f.type))
            failures.append(_failure(f.name, "type", f"column {f.name!r} must hold {f.type} "
                                     f"values like the source ({first_line(exc)})",
                                     max(count, 1), bad))
    if failures:
        return None, failures
    return pa.Table.from_arrays(arrays, schema=schema.arrow), []


def type_kind(arrow_type: pa.DataType) -> str:
    """What a column holds, as far as landing it goes: a number (any width, integer or
    floating: widening is safe), text, true/false, a time, nothing yet, or another type."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    for kind, test in (("null", pa.types.is_null), ("number", pa.types.is_integer),
                       ("number", pa.types.is_floating), ("text", pa.types.is_string),
                       ("text", pa.types.is_large_string), ("boolean", pa.types.is_boolean),
                       ("time", pa.types.is_timestamp), ("time", pa.types.is_date)):
        if test(arrow_type):
            return kind
    return str(arrow_type)


def _first_schema(df: pd.DataFrame, time_column: str | None) -> tuple[SourceSchema, list]:
    """A new source's schema, from its first batch (empty columns have no type yet;
    categorical columns are stored as text)."""
    arrow = pa.Table.from_pandas(df, preserve_index=False).schema.remove_metadata()
    failures = [_failure(f.name, "not_all_null", f"column {f.name!r} is empty in the first "
                         "batch, so the source cannot know its type; fill it or drop it")
                for f in arrow if pa.types.is_null(f.type)]
    arrow = pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                       for f in arrow])
    return SourceSchema(arrow, time_column, "the first batch", new=True), failures


def check_batch(df: pd.DataFrame, *, source: str | Path, as_of: pd.Timestamp,
                time_column: str | None = None) -> Batch:
    """Check a batch against the source's schema and date every row.

    Raises:
        ValidationFailed: with every failure as a table (nothing is written).
        DataError: the source folder cannot take batches (CSV partitions, unreadable).
    """
    root = str(source) if is_remote(source) else Path(source)
    if not is_remote(root) and root.exists() and not root.is_dir():
        raise DataError(f"source {str(root)!r} is a file; --source takes the folder the "
                        "source's partitions live in (a new or existing directory)")
    schema = existing_schema(root)
    failures = []
    if len(df) == 0:
        failures.append(_failure("<table>", "not_empty", "the batch has no rows"))
    if schema is None:
        schema, failures_first = _first_schema(df, time_column)
        failures += failures_first
    elif time_column and schema.origin == SOURCE_FILE and time_column != schema.time_column:
        failures.append(_failure(time_column, "time_column", f"the source's time column is "
                                 f"{schema.time_column!r}, not {time_column!r}; drop "
                                 "--time-column or land the batch in a new source"))
    column = schema.time_column if schema.origin == SOURCE_FILE else time_column
    schema.time_column = column
    table, cast_failures = (None, []) if failures else _cast(df, schema)
    failures += cast_failures
    days = []
    if not failures:
        days, day_failures = _days(df, column, as_of)
        failures += day_failures
    if failures:
        table_ = failures_table(failures)
        raise ValidationFailed(f"the batch does not fit source {str(root)!r}: "
                               f"{table_.iloc[0]['problem']}" + (
                                   f" (and {len(table_) - 1} more failures)"
                                   if len(table_) > 1 else ""), table_)
    return Batch(table, schema, days)


def _days(df: pd.DataFrame, column: str | None, as_of: pd.Timestamp) -> tuple[list, list]:
    """The UTC day each row belongs to (the arrival day without a time column)."""
    if column is None:
        return [as_of.strftime("%Y-%m-%d")] * len(df), []
    if column not in df.columns:
        return [], [_failure(column, "time_column", f"time column {column!r} is missing")]
    times = parse_times(df[column])
    bad = times.isna()
    if bad.any():
        return [], [_failure(column, "time", f"time column {column!r} has {int(bad.sum())} "
                             "empty or unreadable times", int(bad.sum()),
                             df.loc[bad.to_numpy(), column].astype(str).unique()[:3])]
    return times.dt.strftime("%Y-%m-%d").tolist(), []


def _stale_temporaries(root: Path) -> None:
    """Remove temporary files whose writer died (their name holds the writer's pid)."""
    for tmp in root.glob(f"{PARTITION_KEY}=*/.part-*.tmp"):
        pid = tmp.name.split("-")[1]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass


def write_partition(table: pa.Table, folder: Path) -> tuple[Path, bool]:
    """Write one partition file atomically; returns its path and whether it is new."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".part-{os.getpid()}-{uuid.uuid4().hex}.parquet.tmp"
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        final = folder / f"part-{sha256_file(tmp)[:16]}.parquet"
        if final.exists():  # the same rows landed before: content-addressed names
            tmp.unlink()
            return final, False
        os.rename(tmp, final)
        fsync_dir(folder)
        return final, True
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_schema_once(root: Path, schema: SourceSchema) -> None:
    """Write the source's schema file unless one exists (an atomic create: two first batches
    landing at once cannot both write it); a schema written meanwhile must be the same.

    Raises:
        DataError: another batch wrote a different schema first (nothing of this batch is
            written: land it again, and it is checked against that schema).
    """
    target = root / SOURCE_FILE
    tmp = root / f".{SOURCE_FILE}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
    write_bytes_atomic(tmp, dumps(schema_info(schema), sort_keys=False).encode())
    try:
        os.link(tmp, target)  # fails if it exists: the first writer wins
        fsync_dir(root)
        return
    except FileExistsError:
        theirs = existing_schema(root)
    finally:
        tmp.unlink(missing_ok=True)
    if theirs is None or not theirs.arrow.equals(schema.arrow):
        raise DataError(f"another batch created source {str(root)!r} meanwhile with other "
                        "column types; nothing of this batch was written: land it again to "
                        "check it against that schema")


def write_batch(batch: Batch, *, source: str | Path) -> list[dict]:
    """Write a checked batch as one partition per day; the source's schema file first."""
    if is_remote(source):
        return write_remote_batch(batch, source=str(source))
    root = Path(source)
    root.mkdir(parents=True, exist_ok=True)
    _stale_temporaries(root)
    if batch.schema.new or not (root / SOURCE_FILE).is_file():
        write_schema_once(root, batch.schema)
    written = []
    for folder, table in day_tables(batch):
        path, new = write_partition(table, root / folder)
        written.append(written_entry(path.relative_to(root).as_posix(), table, new, path))
    return written


def write_remote_batch(batch: Batch, *, source: str) -> list[dict]:
    """:func:`write_batch` into object storage (:mod:`tasks.data.object_source`)."""
    store = object_source.source_store(source)
    object_source.write_schema_once(store, dumps(schema_info(batch.schema),
                                                 sort_keys=False).encode(), batch.schema.arrow)
    written = []
    for folder, table in day_tables(batch):
        key, new = object_source.put_partition(store, table, folder)
        written.append(written_entry(key, table, new, store.where(key)))
    return written


def day_tables(batch: Batch):
    """Each UTC day's partition folder (``date=YYYY-MM-DD``) and the batch's rows of that day."""
    days = np.asarray(batch.days)
    for day in sorted(set(batch.days)):
        yield f"{PARTITION_KEY}={day}", batch.table.take(np.flatnonzero(days == day))


def written_entry(partition: str, table: pa.Table, new: bool, where) -> dict:
    """What the flow reports of one partition (and logs)."""
    logger.info("%s %s (%d rows)", "Wrote" if new else "Already present:", where,
                table.num_rows)
    return {"partition": partition, "rows": table.num_rows, "new": new}


def announce_arrival(name: str, *, source: str | Path, written: list[dict],
                     as_of: pd.Timestamp) -> str | None:
    """Emit ``rareflow.data.arrived`` for the new partitions (none new: no event)."""
    new = [w["partition"] for w in written if w["new"]]
    if not new:
        return None
    return events.emit(events.DATA_ARRIVED, name=name, payload={
        "source": source_path(str(source)), "partition": new[-1], "partitions": new,
        "rows": sum(w["rows"] for w in written if w["new"]), "as_of": iso(as_of),
    })
