"""Labels and their maturity: which rows carry a label that may be used to judge a model.

Fraud labels arrive late (chargebacks take weeks) and a recent "not fraud" may still flip:
a row counts only once its label is known and old enough.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from schemas.errors import DataError
from schemas.inference import InputSchema
from tasks.data.validation import label_text

logger = logging.getLogger(__name__)

TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "0", "0.0", ""})


def utc(value) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _truthy(values: pd.Series, *, column: str) -> np.ndarray:
    """A 'label available' flag as booleans (missing counts as not available)."""
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(values):
        return (values.fillna(0).to_numpy(dtype=float) != 0)
    text = values.fillna("").astype(str).str.strip().str.lower()
    unknown = sorted(set(text) - TRUE_TEXT - FALSE_TEXT)
    if unknown:
        raise DataError(
            f"label-available column {column!r} must hold true/false, yes/no or 1/0; found "
            f"{unknown[:5]}: fix those values or drop the option"
        )
    return text.isin(TRUE_TEXT).to_numpy()


def parse_times(raw: pd.Series) -> pd.Series:
    """Times as UTC timestamps: ISO 8601 fast, other layouts one by one; NaT where unreadable."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        return pd.to_datetime(raw, utc=True)
    times = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    retry = times.isna() & raw.notna()
    if retry.any():
        times[retry] = pd.to_datetime(raw[retry], utc=True, errors="coerce", format="mixed")
    return times


def matured_mask(
    df: pd.DataFrame,
    *,
    label_time_column: str | None = None,
    label_available_column: str | None = None,
    delay_days: float = 0.0,
    as_of: str | datetime | None = None,
    event_times: pd.Series | None = None,
) -> np.ndarray:
    """Which rows carry a matured label, i.e. one that may be used to judge recall.

    A row is matured when its label-available flag is true (if that column is given) and its
    label time is at least ``delay_days`` before ``as_of`` (if a label-time column is given;
    without one, the rows' ``event_times`` plus ``delay_days`` when both are given).
    A missing time or flag means "not matured". With neither column every row is matured
    (rows whose label itself is missing are dropped later, by the caller).

    Args:
        df: The batch.
        label_time_column: Column with the time each label became known (ISO text or
            datetime; a time without zone is taken as UTC).
        label_available_column: Column saying whether the row's label is known.
        delay_days: Labels younger than this are not yet final (chargebacks still arriving).
        as_of: The time maturity is judged at; default now (UTC).

    Raises:
        DataError: a named column is missing or holds values that are not times or flags.

    Example:
        >>> df = pd.DataFrame({"t": ["2024-01-01", "2024-01-09", None]})
        >>> matured_mask(df, label_time_column="t", delay_days=7, as_of="2024-01-10").tolist()
        [True, False, False]
    """
    mask = np.ones(len(df), dtype=bool)
    for option, column in (("label_available_column", label_available_column),
                           ("label_time_column", label_time_column)):
        if column is not None and column not in df.columns:
            raise DataError(
                f"{option} {column!r} is not a column of the batch; its columns are "
                f"{list(map(str, df.columns))[:20]}: fix the name or drop the option"
            )
    if label_available_column is not None:
        mask &= _truthy(df[label_available_column], column=label_available_column)
    times = maturity_times(df, label_time_column=label_time_column, delay_days=delay_days,
                           event_times=event_times)
    if times is not None:
        cutoff = utc(as_of if as_of is not None else datetime.now(UTC))
        mask &= (times.notna() & (times <= cutoff)).to_numpy()
    return mask


def label_times(raw: pd.Series, *, column: str) -> pd.Series:
    """A label-time column as UTC timestamps (NaT where empty).

    Raises:
        DataError: it holds numbers, or values that are not dates or times.
    """
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        raise DataError(
            f"label_time_column {column!r} must hold dates or times (ISO text or "
            f"datetime); got numbers ({raw.dtype}): convert them to timestamps first"
        )
    times = parse_times(raw)
    bad = times.isna() & raw.notna()
    if bad.any():
        examples = raw[bad].astype(str).unique()[:3].tolist()
        raise DataError(
            f"label_time_column {column!r} must hold dates or times; "
            f"{int(bad.sum())} values are not ({examples}): fix or blank them"
        )
    return times


def maturity_times(
    df: pd.DataFrame,
    *,
    label_time_column: str | None = None,
    delay_days: float = 0.0,
    event_times: pd.Series | None = None,
) -> pd.Series | None:
    """When each row's label matures: its label time plus ``delay_days``, or (without a
    label-time column) its event time plus ``delay_days``; None when neither applies.

    Example:
        >>> df = pd.DataFrame({"t": ["2024-01-01", None]})
        >>> maturity_times(df, label_time_column="t", delay_days=7).tolist()[0]
        Timestamp('2024-01-08 00:00:00+0000', tz='UTC')
    """
    delay = pd.Timedelta(days=delay_days)
    if label_time_column is not None:
        times = label_times(df[label_time_column], column=label_time_column)
        return times + delay
    if event_times is not None and delay_days > 0:
        return pd.Series(event_times).set_axis(df.index) + delay
    return None


def binary_labels(labels: pd.Series, *, positive: str, negative: str) -> np.ndarray:
    """The label column as 1.0 (positive), 0.0 (negative) or NaN (not labelled yet).

    Values are compared as text the way training read them (1.0 matches '1').

    Raises:
        DataError: a value is neither the version's positive nor its negative label.
    """
    present = labels.notna()
    text = label_text(labels[present])
    unknown = text[~text.isin([positive, negative])]
    if len(unknown):
        raise DataError(
            f"label {labels.name!r} must hold the values the model was trained on "
            f"({positive!r} positive, {negative!r} negative, or empty when not yet known); "
            f"{len(unknown)} rows hold {sorted(unknown.unique())[:5]}: fix or drop those rows"
        )
    out = np.full(len(labels), np.nan)
    out[present.to_numpy()] = (text == positive).to_numpy(dtype=float)
    return out


def usable_labels(
    df: pd.DataFrame,
    *,
    schema: InputSchema,
    label_time_column: str | None = None,
    label_available_column: str | None = None,
    delay_days: float = 0.0,
    as_of: str | datetime | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The batch's labels as 1.0/0.0/NaN, and which rows may judge the model (matured, known).

    Raises:
        DataError: the label column is missing or holds unknown values, or a maturity
            column is missing or malformed.
    """
    if schema.label not in df.columns:
        raise DataError(
            f"monitoring needs the label column {schema.label!r} the model was trained on; the "
            f"batch has {list(map(str, df.columns))[:20]}: add the labels (empty where not yet "
            "known)"
        )
    y = binary_labels(df[schema.label], positive=schema.positive, negative=schema.negative)
    mask = matured_mask(df, label_time_column=label_time_column,
                        label_available_column=label_available_column, delay_days=delay_days,
                        as_of=as_of)
    usable = mask & ~np.isnan(y)
    logger.info("%d of %d rows have matured labels (%d unlabelled, %d not matured)",
                int(usable.sum()), len(df), int(np.isnan(y).sum()), int((~mask).sum()))
    return y, usable


@dataclass
class LabelRoles:
    """What each monitored row is for: judged on its matured label, or estimated (pending)."""

    y: np.ndarray  # 1.0 / 0.0 / NaN
    judged: np.ndarray  # matured, labelled, matured after the last check
    pending: np.ndarray  # label not matured yet (and the row is newer than the last check)
    checked_before: int  # matured rows left out: judged by an earlier check or trained on


def label_roles(batch: pd.DataFrame, *, schema: InputSchema, matured: np.ndarray | None,
                maturity_time: pd.Series | None, event_time: pd.Series | None,
                since: pd.Timestamp | None) -> LabelRoles:
    """Split monitored rows into those judged now and those only estimated.

    ``matured`` / ``maturity_time`` / ``event_time`` come from the data source (None: every
    row is matured, as for a labelled batch file). With ``since`` only labels that matured
    after it are judged, and only rows that happened after it are estimated.

    Raises:
        DataError: the label column is missing or holds values the model was not trained on.
    """
    if schema.label not in batch.columns:
        raise DataError(
            f"monitoring needs the label column {schema.label!r} the model was trained on; the "
            f"batch has {list(map(str, batch.columns))[:20]}: add the labels (empty where not yet "
            "known)"
        )
    y = binary_labels(batch[schema.label], positive=schema.positive, negative=schema.negative)
    matured = np.ones(len(batch), dtype=bool) if matured is None else np.asarray(matured)
    judged = matured & ~np.isnan(y)
    pending = ~matured
    checked = 0
    if since is not None and maturity_time is not None:
        fresh = (maturity_time > since).to_numpy()
        checked = int((judged & ~fresh).sum())
        judged &= fresh
    if since is not None and event_time is not None:
        pending &= (event_time > since).to_numpy()
    logger.info("%d rows judged on matured labels, %d awaiting labels (estimated), %d matured "
                "before the last check or the training window", int(judged.sum()),
                int(pending.sum()), checked)
    return LabelRoles(y, judged, pending, checked)


def event_times(raw: pd.Series, *, column: str, where: str) -> pd.Series:
    """A time column as UTC timestamps; every row needs one."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        raise DataError(f"{where}: time column {column!r} holds numbers ({raw.dtype}), not "
                        "dates or times: store ISO text or timestamps")
    times = parse_times(raw)
    bad = times.isna()
    if bad.any():
        examples = raw[bad].astype(str).unique()[:3].tolist()
        raise DataError(f"{where}: {int(bad.sum())} rows have an empty or unreadable time "
                        f"column {column!r} ({examples}); fix or drop those rows")
    return times.reset_index(drop=True)
