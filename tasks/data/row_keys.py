"""Row keys of a data source: the key a scored row carries, so monitoring can join it with the
row's label when the label matures, and ``rareflow audit`` can find the decision.

With an ``id_column`` the key is that column. Without one it is a content fingerprint: the
first 16 bytes of the sha256 of the row's input values (the version's features, in name order,
and the time column when there is one), as 32 hex characters. Values are put in a canonical
text first (numbers as float64, times as UTC nanoseconds, the rest as text, a missing value as
a NUL), so the same row gets the same key from CSV or Parquet, in any column order, and from
its labelled copy later (the label is not an input).

The split's content hashes (:func:`tasks.data.split.content_hashes`) are 64-bit and include the
label: a key must be a sha256 and must not change when the label arrives, hence this module.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import DataError
from schemas.inference import InputSchema
from schemas.scored import ROW_KEY_BYTES

SEPARATOR = "\x1f"  # the ASCII unit separator between text values
MISSING = "\x00"


def _number_bytes(column: pd.Series, kind: str) -> np.ndarray:
    """Eight little-endian bytes per row: float64 for numbers (one NaN, no -0.0), int64 UTC
    nanoseconds for times (a missing time: the smallest int64)."""
    if kind == "time":
        stamps = pd.to_datetime(column, utc=True, errors="coerce")
        values = stamps.to_numpy(dtype="datetime64[ns]").view(np.int64).astype("<i8")
    else:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64,
                                                                 na_value=np.nan)
        values = np.where(np.isnan(values), np.nan, values + 0.0).astype("<f8")
    return values.view(np.uint8).reshape(len(column), 8)


def _text_array(column: pd.Series) -> pa.Array:
    try:
        return pc.cast(pa.array(column, from_pandas=True), pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        values = column.astype(object).where(column.notna(), None)
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _text(df: pd.DataFrame, names: list) -> list[bytes]:
    if not names:
        return [b""] * len(df)
    joined = pc.binary_join_element_wise(*[_text_array(df[n]) for n in names], SEPARATOR,
                                         null_handling="replace", null_replacement=MISSING)
    return pc.cast(joined, pa.binary()).to_pylist()


def row_keys(df: pd.DataFrame, kinds: dict[str, str]) -> np.ndarray:
    """One key per row of ``df`` from the columns of ``kinds`` (name -> ``numeric``,
    ``time`` or ``text``), in name order: 32 hex characters each.

    The digest covers, per row, the 8-byte values of the numeric and time columns (in name
    order), then the text columns' values (in name order) joined by U+001F."""
    names = sorted(kinds, key=str)
    fixed = [n for n in names if kinds[n] != "text"]
    matrix = (np.ascontiguousarray(np.hstack([_number_bytes(df[n], kinds[n]) for n in fixed]))
              if fixed else np.zeros((len(df), 0), dtype=np.uint8))
    texts = _text(df, [n for n in names if kinds[n] == "text"])
    width = 2 * ROW_KEY_BYTES
    out = np.empty(len(df), dtype=object)
    for i, (row, text) in enumerate(zip(matrix, texts, strict=True)):
        digest = hashlib.sha256(row)
        digest.update(text)
        out[i] = digest.hexdigest()[:width]
    return out


def key_columns(schema: InputSchema, time_column: str | None = None) -> dict[str, str]:
    """The columns a row's fingerprint reads, with their kind: the version's features, and
    the time column."""
    kinds = {f.name: "numeric" if f.kind == "numeric" else "text" for f in schema.features}
    if time_column:
        kinds[time_column] = "time"
    return kinds


def key_hashes(keys) -> np.ndarray:
    """A 64-bit hash per key (to find repeats among millions of keys in little memory)."""
    values = pd.Series(keys).astype(str).to_numpy(dtype=object)
    return pd.util.hash_array(values, categorize=False)


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
