"""Row keys: what joins a scored row with its label when it matures.

A source with an ``id_column`` keys rows by it. Without one a row's key is ``row_key``: a
sha256 content fingerprint of the row's input values (every column but the label and its
maturity columns, which arrive after the row was scored, and the time column) and of its event
time in UTC nanoseconds (parsed from the time column, so text and timestamps agree), so the
scorer and monitoring compute the same key for the same row before and after its label lands.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from schemas.errors import DataError


def content_row_keys(frame: pd.DataFrame, *, exclude=(), times: pd.Series | None = None
                     ) -> np.ndarray:
    """One sha256 hex string per row over its values in every column but ``exclude`` (by
    column name, in sorted order; pandas' stable per-value hashes) and, when given, its event
    time (``times``: UTC timestamps, e.g. :func:`tasks.data.labels.parse_times` of the time
    column, which then belongs in ``exclude``).

    Example:
        >>> df = pd.DataFrame({"a": [1, 1], "b": ["x", "x"], "label": [0, 1]})
        >>> keys = content_row_keys(df, exclude=("label",))
        >>> keys[0] == keys[1], len(keys[0])
        (True, 64)
    """
    columns = sorted(str(c) for c in frame.columns if c not in set(exclude))
    if not columns:
        raise DataError("a row key needs input columns; the rows hold only labels: set "
                        "id_column to the column naming each row")
    hashes = np.column_stack([
        pd.util.hash_pandas_object(frame[c], index=False).to_numpy(dtype=np.uint64)
        for c in columns]).astype("<u8")
    if times is not None:  # NaT hashes as the smallest int64, as pandas stores it
        stamps = pd.to_datetime(pd.Series(times), utc=True).astype("datetime64[ns, UTC]")
        nanos = stamps.array.asi8.astype("<i8").view("<u8")
        hashes = np.column_stack([hashes, nanos])
        columns = [*columns, "\x00event time"]
    prefix = hashlib.sha256("\x1f".join(columns).encode()).digest()
    return np.array([hashlib.sha256(prefix + row.tobytes()).hexdigest() for row in hashes],
                    dtype=object)


def unique_keys(keys, *, key: str, where: str) -> pd.Index:
    """The keys as an index, refusing one that repeats (it could not name one row).

    Raises:
        DataError: naming the key, the first repeated value and where.
    """
    index = pd.Index(keys)
    if index.has_duplicates:
        repeated = index[index.duplicated()][0]
        raise DataError(f"row key {key!r} repeats in {where} (e.g. {repeated!r}): a key must "
                        "name one row; set id_column to a unique column")
    return index
