"""Scoring one partition of a source by record batches, in bounded memory.

A partition is read a record batch at a time (Parquet row groups through
``ParquetFile.iter_batches``, CSV through pyarrow's streaming reader with the version's column
types); each batch is checked against the version's frozen schema (``validate_batch``), scored,
and appended to a temporary Parquet file beside the final one. Any failure removes the
temporary file: nothing of the partition is written. Peak memory is a batch's worth, whatever
the partition's size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from schemas.errors import DataError, ValidationFailed, storage_error
from schemas.inference import InputSchema
from schemas.scored import (
    DECISION,
    MODEL_SIGNATURE,
    MODEL_VERSION,
    ROW_KEY,
    SCORE,
    SCORED_AT,
    THRESHOLD,
)
from tasks.data.row_keys import key_columns, key_hashes, row_keys
from tasks.data.source_files import first_line, is_parquet
from tasks.data.validation import validate_batch

logger = logging.getLogger(__name__)

BATCH_ROWS = 65_536  # rows per record batch: memory is a few batches, whatever the partition


@dataclass(frozen=True)
class Serving:
    """What every scored row of a run carries about the version that decided it."""

    model: object  # the served classifier (tasks/decision/served_classifier.py)
    version: str
    signature: str | None
    scored_at: pd.Timestamp
    id_column: str | None = None
    time_column: str | None = None

    @property
    def key_column(self) -> str:
        return self.id_column or ROW_KEY


def no_challenger(batch: pd.DataFrame) -> dict[str, np.ndarray]:
    """The shadow-challenger hook: extra columns for a batch (``challenger_score``,
    ``challenger_decision``, ``challenger_version`` of schemas/scored.py). None today."""
    return {}


@dataclass
class PartitionScore:
    """A partition scored into a temporary file, not yet in place."""

    tmp: Path
    rows: int = 0
    flagged: int = 0
    key_hashes: list = field(default_factory=list)
    sorted_hashes: np.ndarray | None = None  # set once the keys are checked
    staged: str | None = None  # uploaded by a Dask worker: its key in the scored source's store

    def hashes(self) -> np.ndarray:
        return np.concatenate(self.key_hashes) if self.key_hashes else np.zeros(0, np.uint64)


def _csv_options(schema: InputSchema, *, typed: bool) -> pacsv.ConvertOptions:
    """The version's column types (numbers as float64, categories as text); or, ``typed``
    off, every feature as text, so that a bad value reaches ``validate_batch``, which names
    its row (the slow path, taken only to find the row Arrow refused)."""
    types = {f.name: pa.float64() if typed and f.kind == "numeric" else pa.string()
             for f in schema.features}
    return pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)


def _number(column: pd.Series) -> np.ndarray:
    """Checked text as float64, correctly rounded (Arrow's parser), so a row read from CSV
    has the same values (and row key) as from Parquet."""
    try:
        return pa.array(column, type=pa.string(), from_pandas=True).cast(pa.float64()
                                                                          ).to_numpy(False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)


def _as_numbers(df: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    text = [n for n in schema.numeric if not pd.api.types.is_numeric_dtype(df[n])]
    return df.assign(**{n: _number(df[n]) for n in text}) if text else df


def record_batches(path: Path, schema: InputSchema, rows: int | None = None, *,
                   typed: bool = True) -> Iterator[pa.RecordBatch]:
    """The record batches of a Parquet or CSV (optionally gzipped) file, streamed
    (``rows`` each, default :data:`BATCH_ROWS`)."""
    rows = rows or BATCH_ROWS
    if is_parquet(path):
        yield from pq.ParquetFile(path).iter_batches(batch_size=rows)
        return
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 24),
                            convert_options=_csv_options(schema, typed=typed))
    for batch in reader:
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def missing_columns(path: Path, schema: InputSchema, needed: list[str]) -> list[str]:
    """The columns a partition must have and lacks (read from its footer or header)."""
    if is_parquet(path):
        names = set(pq.read_schema(path).names)
    else:
        with pacsv.open_csv(path) as reader:
            names = set(reader.schema.names)
    return [n for n in [*schema.feature_names, *needed] if n not in names]


def first_bad_row(df: pd.DataFrame, failures: pd.DataFrame) -> int:
    """The index label of the first row a validation failure names: a missing value for a
    null check, else the first value shown among its examples (the batch's first row when the
    failure is about the whole column)."""
    for _, failure in failures.iterrows():
        column, shown = failure["column"], str(failure["examples"])
        if column not in df.columns:
            continue
        values = df[column]
        if "null" in str(failure["check"]):
            bad = values.isna()
        else:
            bad = values.notna() & values.map(lambda v, s=shown: repr(v) in s).astype(bool)
        if bad.any():
            return int(bad.idxmax())
    return int(df.index[0])


def _served(batch: pd.DataFrame, serving: Serving, extra: Callable) -> tuple[pa.Table, int]:
    model = serving.model
    scores = model.positive_proba(batch)
    decisions = np.asarray(model.decide(batch, scores), dtype=np.int8)
    n = len(batch)
    if serving.id_column:
        key = pa.array(batch[serving.id_column], from_pandas=True)
    else:
        key = pa.array(row_keys(batch, key_columns(model.schema, serving.time_column)),
                       type=pa.string())
    columns = {serving.key_column: key}
    if serving.time_column:
        columns[serving.time_column] = pa.array(batch[serving.time_column], from_pandas=True)
    columns |= {
        SCORE: pa.array(np.asarray(scores, dtype=np.float64)),
        DECISION: pa.array(decisions),
        MODEL_VERSION: pa.array([serving.version] * n, type=pa.string()),
        THRESHOLD: pa.array(np.full(n, float(model.threshold))),
        MODEL_SIGNATURE: pa.array([serving.signature] * n, type=pa.string()),
        SCORED_AT: pa.array(np.full(n, serving.scored_at.asm8.astype("datetime64[us]")),
                            type=pa.timestamp("us", tz="UTC")),
    }
    columns |= {k: pa.array(v, from_pandas=True) for k, v in extra(batch).items()}
    return pa.table(columns), int(decisions.sum())


def _check_batch(df: pd.DataFrame, schema: InputSchema, where: str) -> None:
    try:
        validate_batch(df, schema)
    except ValidationFailed as exc:
        row = first_bad_row(df, exc.failures) + 1
        raise DataError(f"partition {where}, data row {row:,}: {exc}; nothing of this "
                        "partition was written: fix or re-ingest it and score again") from exc


def _frames(path: Path, serving: Serving, *, typed: bool = True) -> Iterator[pd.DataFrame]:
    offset = 0
    for record_batch in record_batches(path, serving.model.schema, typed=typed):
        df = record_batch.to_pandas()
        df.index = pd.RangeIndex(offset, offset + len(df))
        offset += len(df)
        yield df


def _batches(path: Path, serving: Serving, where: str) -> Iterator[pd.DataFrame]:
    try:
        yield from _frames(path, serving)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        if storage_error(exc) is not None or not isinstance(exc, pa.ArrowException):
            raise
        if not is_parquet(path):  # find the row: read as text, check batch by batch
            for df in _frames(path, serving, typed=False):
                _check_batch(df, serving.model.schema, where)
        raise DataError(f"partition {where} cannot be read: {first_line(exc)}; nothing of "
                        "this partition was written: fix or re-ingest it") from exc


def score_partition(path: Path, out: Path, serving: Serving, *, where: str,
                    extra: Callable[[pd.DataFrame], dict] = no_challenger) -> PartitionScore:
    """Score ``path`` batch by batch into a temporary file beside ``out``.

    Raises:
        DataError: a column is missing, a row does not fit the version's schema (naming the
            partition and the row), or the partition is unreadable; the temporary file is
            removed.
    """
    needed = [c for c in (serving.id_column, serving.time_column) if c]
    if missing := missing_columns(path, serving.model.schema, needed):
        raise DataError(f"partition {where} has no column {missing[0]!r}, which "
                        f"{serving.version} reads (frozen schema) or the config names; "
                        "nothing was written: re-ingest it with that column or score it with "
                        "a version trained without it")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = PartitionScore(out.parent / f".{out.name}.{uuid.uuid4().hex}.tmp")
    writer = None
    try:
        for df in _batches(path, serving, where):
            _check_batch(df, serving.model.schema, where)
            table, flagged = _served(_as_numbers(df, serving.model.schema), serving, extra)
            if writer is None:
                writer = pq.ParquetWriter(result.tmp, table.schema)
            writer.write_table(table)
            result.rows += len(df)
            result.flagged += flagged
            result.key_hashes.append(key_hashes(table.column(0).to_numpy(zero_copy_only=False)))
        if writer is None:
            raise DataError(f"partition {where} has no rows; remove it or re-ingest it")
        writer.close()
        with open(result.tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException as exc:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        result.tmp.unlink(missing_ok=True)
        if (full := storage_error(exc, out)) is not None:
            raise full from exc
        raise
    return result
