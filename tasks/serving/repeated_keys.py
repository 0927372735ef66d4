"""Finding a row key that repeats in a scored source, and naming it: within a partition, or
between two (:meth:`tasks.serving.scored_source.ScoredSource.check_all_repeats` decides which
to compare). Hashes find the candidates; the key values themselves decide (equal 64-bit hashes
of different keys are no repeat)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from schemas.errors import DataError
from schemas.scored import ROW_KEY
from tasks.data.row_keys import key_hashes
from tasks.serving.key_index import shared_hashes
from tasks.serving.partition_scoring import PartitionScore

KEY_BATCH_ROWS = 1 << 20  # key values read a batch at a time


def refuse_repeats_within(rel: str, result: PartitionScore, key_column: str,
                           rows: Callable) -> None:
    """Sort the partition's key hashes; refuse a key it holds twice (``rows()``: its scored
    rows, read only when two hashes are equal).

    Raises:
        DataError: naming the key and the partition.
    """
    hashes = np.sort(result.hashes())
    dup = hashes[1:][hashes[1:] == hashes[:-1]]
    if len(dup) and (key := _repeated_value(rows(), dup)) is not None:
        raise _repeat_error(key, key_column, rel, rel)
    result.sorted_hashes, result.key_hashes = hashes, []  # one copy in memory, not two


def refuse_shared(rel: str, result: PartitionScore, hits: np.ndarray, key_column: str,
                   rows: Callable,
                   others: list[tuple[str, np.ndarray, Callable]]) -> None:
    """Refuse the partition (``rows()``: its scored rows) if one of ``others`` (name, sorted hashes,
    a callable giving its scored rows, read only on a hit) holds a key of it among ``hits``
    (equal hashes of different keys are no repeat).

    Raises:
        DataError: naming the key and both partitions.
    """
    for other, theirs, path in others:
        common = shared_hashes(theirs, shared_hashes(hits, result.sorted_hashes))
        if len(common) and (key := _shared_value(rows(), path(), common)) is not None:
            raise _repeat_error(key, key_column, other, rel)


def _repeat_error(key, key_column: str, first: str, second: str) -> DataError:
    where = f"twice in partition {first}" if first == second else (
        f"in partitions {first} and {second}")
    fix = ("remove the duplicated rows, or name a unique id_column" if key_column == ROW_KEY
           else f"fix the {key_column!r} values")
    return DataError(f"row key {key_column}={key!r} repeats {where}; each row needs a unique "
                     f"key: {fix} and score again; nothing of {second} was written")


def scored_keys(path):
    """The key column (the first) of a scored partition (a path or a pyarrow file), a batch of
    values at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=KEY_BATCH_ROWS,
                                      columns=parquet.schema_arrow.names[:1]):
        values = batch.column(0).to_numpy(zero_copy_only=False)
        yield values, key_hashes(values)


def _values(path: Path, wanted: np.ndarray) -> pd.Series:
    parts = [pd.Series(v[np.isin(h, wanted)], dtype=object) for v, h in scored_keys(path)]
    return pd.concat(parts, ignore_index=True) if parts else pd.Series(dtype=object)


def _repeated_value(path: Path, wanted: np.ndarray):
    values = _values(path, wanted).astype(str)
    repeated = values[values.duplicated()]
    return repeated.iloc[0] if len(repeated) else None


def _shared_value(path: Path, other: Path, wanted: np.ndarray):
    mine = set(_values(path, wanted).astype(str))
    theirs = _values(other, wanted).astype(str)
    shared = theirs[theirs.isin(mine)]
    return shared.iloc[0] if len(shared) else None
