"""Stratified train/test split with row fingerprints that prove the parts are disjoint.

Two kinds of fingerprint: the split's own (content and position: the parts of this table are
disjoint), and position-independent content hashes of each training and test row (features
and label, after a canonical cast, so the same row hashes the same from CSV or Parquet, in
any column order). A version keeps its training rows' hashes (``train_rows.npy``), so a
later candidate can leave out of the champion comparison any test row the champion trained
on, even from another table.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import StratifiedKFold, train_test_split

from schemas.errors import ConfigError, DataError
from schemas.inference import InputSchema
from tasks.data.validation import LabelledData

logger = logging.getLogger(__name__)


@dataclass
class Split:
    """Row positions (in the validated table) of the training and test parts."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    fingerprints: dict


def row_hashes(df: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of content (index ignored)."""
    return pd.util.hash_pandas_object(df, index=False).to_numpy()


_FNV_PRIME = np.uint64(0x100000001B3)


def _name_salt(name) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha256(str(name).encode()).digest()[:8], "little"))


def content_hashes(X: pd.DataFrame, y: np.ndarray, columns) -> np.ndarray:
    """One 64-bit hash per row of its content: ``columns`` (in name order) and the 0/1 label.

    Numbers (and booleans) are hashed as float64 and everything else as text, so the same
    row hashes the same whatever dtype its table gave it; one column at a time, so the only
    extra memory is a column's worth.
    """
    h = np.full(len(X), 0xCBF29CE484222325, dtype=np.uint64)
    for name in sorted(columns, key=str):
        column = X[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = column.astype(object).where(column.notna(), None).to_numpy()
        h = (h ^ pd.util.hash_array(values) ^ _name_salt(name)) * _FNV_PRIME
    label = pd.util.hash_array(np.asarray(y, dtype=np.int64))
    return (h ^ label ^ _name_salt("<label>")) * _FNV_PRIME


def fingerprint(hashes: np.ndarray, positions: np.ndarray) -> str:
    """Order-independent digest of a set of rows: their positions and content hashes."""
    salt = positions.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    keyed = np.sort(hashes[positions] ^ salt)
    return hashlib.sha256(keyed.tobytes()).hexdigest()


def shared_count(a: np.ndarray, b: np.ndarray) -> int:
    """How many distinct values are in both arrays (``np.intersect1d(a, b).size``, by sorting:
    it is several times faster than numpy's hash-based unique on millions of hashes)."""
    if not len(a) or not len(b):
        return 0
    a, b = np.sort(a), np.sort(b)
    at = np.minimum(np.searchsorted(a, b), len(a) - 1)
    common = b[a[at] == b]
    return int(np.count_nonzero(np.diff(common)) + 1) if len(common) else 0


def out_of_time(times: pd.Series, *, test_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and test positions with the newest ``test_size`` share of rows as the test part
    (ties in time keep row order)."""
    order = np.argsort(pd.to_datetime(times, utc=True).to_numpy(), kind="stable")
    n_test = int(np.ceil(test_size * len(order)))
    return np.sort(order[:-n_test]), np.sort(order[-n_test:])


def stratified_split(
    X: pd.DataFrame, y: np.ndarray, *, test_size: float, seed: int,
    times: pd.Series | None = None, n_folds: int = 2,
) -> Split:
    """Split rows into stratified train and test parts and record their fingerprints; with
    ``times``, the test part is the newest rows instead (:func:`out_of_time`).

    The fingerprints also count rows whose content appears in both parts (exact duplicate
    rows in the source), a leakage a user should know about.
    """
    positions = np.arange(len(y))
    if times is not None:
        if len(times) != len(y):
            raise ValueError(f"{len(times)} row times for {len(y)} rows")
        train_idx, test_idx = out_of_time(times, test_size=test_size)
        for part, idx, least in (("training", train_idx, n_folds), ("test", test_idx, 1)):
            fewest = int(min(y[idx].sum(), len(idx) - y[idx].sum()))
            if fewest < least:
                raise DataError(
                    f"the {part} part of an out-of-time split (test part: the newest "
                    f"{test_size:.0%} of rows) holds {fewest} rows of one class, fewer than "
                    f"the {least} it needs: widen --window, or set split.test_order: random")
    else:
        train_idx, test_idx = train_test_split(
            positions, test_size=test_size, stratify=y, random_state=seed
        )
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    hashes = row_hashes(X)
    shared = shared_count(hashes[train_idx], hashes[test_idx])
    fp = {
        "rows": int(len(y)),
        "train_rows": int(len(train_idx)),
        "test_rows": int(len(test_idx)),
        "train_positives": int(y[train_idx].sum()),
        "test_positives": int(y[test_idx].sum()),
        "train": fingerprint(hashes, train_idx),
        "test": fingerprint(hashes, test_idx),
        "data": hashlib.sha256(np.sort(hashes).tobytes()).hexdigest(),
        "duplicate_rows_across_parts": int(shared),
        "test_order": "random" if times is None else "time",
    }
    if times is not None:
        fp["test_from"] = pd.to_datetime(times, utc=True).iloc[test_idx].min().isoformat()
    if shared:
        logger.warning(
            "%d distinct rows appear in both train and test (exact duplicates in the data)", shared
        )
    return Split(train_idx=train_idx, test_idx=test_idx, fingerprints=fp)


def cv_folds(y: np.ndarray, *, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds over the training part (positions relative to it)."""
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(y)), y))


@dataclass
class Parts:
    """The training and test parts (copies of their rows), with the split's fingerprints."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    schema: InputSchema
    fingerprints: dict
    train_rows: np.ndarray | None = None  # distinct content hashes of the training rows
    test_rows: np.ndarray | None = None  # the content hash of each judged row, in order
    evidence: str = "test_part"  # or "nested_cv": no test part, every row trains and judges

    @property
    def judged_rows_must_not_repeat(self) -> np.ndarray | None:
        """Rows a judged row must not duplicate for a fair comparison: the training rows, or
        none with nested-CV evidence (each judged row was scored out of fold, by a model that
        did not train on it, so every row is fair for the candidate)."""
        return None if self.evidence == "nested_cv" else self.train_rows


def split_parts(data: LabelledData, *, test_size: float, seed: int,
                evidence: str = "test_part", times: pd.Series | None = None,
                n_folds: int = 2) -> Parts:
    """Train and test parts of validated data (see :func:`stratified_split`): stratified, or
    with ``times`` (each row's event time) the newest rows as the test part.

    With ``evidence="nested_cv"`` there is no test part: the training part is every row,
    and the candidate is judged by a nested cross-validation over them
    (:mod:`tasks.search.evidence`).
    """
    rows = content_hashes(data.X, data.y, data.schema.feature_names)
    if evidence == "nested_cv":  # every row trains, and every row is judged (out of fold)
        hashes = row_hashes(data.X)
        everything = np.arange(len(data.y))
        fp = {"rows": int(len(data.y)), "train_rows": int(len(data.y)), "test_rows": 0,
              "train_positives": int(data.y.sum()), "test_positives": 0,
              "train": fingerprint(hashes, everything), "test": None,
              "data": hashlib.sha256(np.sort(hashes).tobytes()).hexdigest(),
              "duplicate_rows_across_parts": 0}
        logger.info("No test part: %d rows (%d positives) are judged by nested cross-"
                    "validation", len(data.y), int(data.y.sum()))
        return Parts(data.X.iloc[everything], data.y, data.X.iloc[:0], data.y[:0],
                     data.schema, fp, train_rows=np.unique(rows), test_rows=rows,
                     evidence=evidence)
    split = stratified_split(data.X, data.y, test_size=test_size, seed=seed, times=times,
                             n_folds=n_folds)
    parts = Parts(data.X.iloc[split.train_idx], data.y[split.train_idx],
                  data.X.iloc[split.test_idx], data.y[split.test_idx], data.schema,
                  split.fingerprints, train_rows=np.unique(rows[split.train_idx]),
                  test_rows=rows[split.test_idx])
    logger.info("Split: %d train rows (%d positives), %d test rows (%d positives)%s",
                len(parts.y_train), int(parts.y_train.sum()), len(parts.y_test),
                int(parts.y_test.sum()), "" if times is None else
                f"; out of time: the test part is the rows from {split.fingerprints['test_from']}")
    return parts


def split_times(config, window) -> pd.Series | None:
    """The row times of an out-of-time split (``split.test_order``), or None for a random one.

    Raises:
        ConfigError: ``test_order: time`` without a ``time_column``.
    """
    order = config.split.test_order
    if order == "random" or (order == "auto" and not config.time_column):
        return None
    if not config.time_column or window.event_time is None:
        raise ConfigError("split.test_order 'time' needs time_column: name the column with "
                          "each row's event time, or set split.test_order: random")
    return window.event_time


split_task = task(split_parts, name="split", cache_policy=NO_CACHE)
