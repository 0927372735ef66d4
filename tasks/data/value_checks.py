"""Checks of values that a column's type does not catch, and that would otherwise change a
decision without a word: nested values, dates sent as text, numbers beyond what the models
compute in (float32), true/false sent for a yes/no category, a feature missing in every row.

Each check returns failure rows (:func:`tasks.data.validation._failure`'s shape) for the validation
table; :func:`training_value_failures` runs on a training table, :func:`batch_value_failures`
on a batch to score or monitor against a version's frozen schema.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from schemas.inference import InputSchema

FLOAT32_MAX = float(np.finfo(np.float32).max)
DATE_TEXT_MIN_DISTINCT = 100  # fewer distinct dates (months, quarters) make a fair category
SAMPLE_ROWS = 50_000


def failure(column, check: str, problem: str, count: int = 1, examples=()) -> dict:
    """One row of the validation table."""
    shown = ", ".join(repr(e) for e in list(examples)[:3])
    return {"column": str(column), "check": check, "problem": problem, "count": int(count),
            "examples": shown}


def _text_like(s: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)


def nested_failures(df: pd.DataFrame, columns) -> list[dict]:
    """Columns holding lists, mappings or arrays (Parquet list/struct/map columns)."""
    out = []
    for name in columns:
        s = df[name]
        if not _text_like(s):
            continue
        present = s.dropna()
        first = present.iloc[0] if len(present) else None
        if isinstance(first, list | tuple | dict | set | np.ndarray):
            out.append(failure(name, "flat_values", f"column {name!r} holds "
                               f"{type(first).__name__} values (a nested Parquet column); "
                               "rareflow reads one value per cell: flatten it or drop it",
                               len(present), [str(first)[:40]]))
    return out


def float32_range_failures(df: pd.DataFrame, columns) -> list[dict]:
    """Numeric columns with finite values beyond float32's range (±3.4e38): finite here,
    infinite inside the models."""
    out = []
    for name in columns:
        s = df[name]
        if not pd.api.types.is_float_dtype(s):
            continue
        values = s.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            big = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)
        if big.any():
            out.append(failure(name, "float32_range", f"column {name!r} has {int(big.sum())} "
                               f"values beyond ±{FLOAT32_MAX:.3g}, which the models cannot "
                               "compute with; fix or clip them", int(big.sum()),
                               values[big][:3].tolist()))
    return out


def date_text_failures(df: pd.DataFrame, columns) -> list[dict]:
    """Text columns whose many distinct values are all dates: a category per day would be
    learnt, and every later day would be unseen."""
    out = []
    for name in columns:
        s = df[name]
        if not _text_like(s):
            continue
        distinct = pd.Series(s.iloc[:SAMPLE_ROWS].dropna().unique())
        if len(distinct) < DATE_TEXT_MIN_DISTINCT:
            continue
        sample = distinct.iloc[:200].astype(str)
        if not sample.str.contains(r"\d[-/:.]\d", regex=True).all():
            continue
        parsed = pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True)
        if parsed.notna().mean() >= 0.95:
            out.append(failure(name, "not_date_text", f"column {name!r} holds dates as text "
                               f"({len(distinct)}+ distinct values); a date is not a category: "
                               "pass it as the time column, drop it, or derive numbers from "
                               "it", len(distinct), sample.iloc[:3].tolist()))
    return out


def training_value_failures(df: pd.DataFrame, features) -> list[dict]:
    """The value checks a training table's feature columns must pass."""
    return float32_range_failures(df, features) + date_text_failures(df, features)


def batch_value_failures(df: pd.DataFrame, schema: InputSchema) -> list[dict]:
    """The value checks a batch must pass against a version's frozen schema."""
    present = [f for f in schema.features if f.name in df.columns]
    out = float32_range_failures(df, [f.name for f in present if f.kind == "numeric"])
    for f in present:
        s = df[f.name]
        if (f.kind == "categorical" and pd.api.types.is_bool_dtype(s)
                and not {"True", "False"} & set(f.categories or ())):
            out.append(failure(f.name, "categories_not_boolean", f"column {f.name!r} holds "
                               f"true/false values but was trained on the categories "
                               f"{list(f.categories or [])[:5]}; send the values it was "
                               "trained on", int(s.notna().sum()), s.dropna().unique()[:3]))
        elif not f.nullable and len(s) and s.isna().all():
            out.append(failure(f.name, "not_all_missing", f"column {f.name!r} is missing in "
                               "every row of the batch but was never missing in training; "
                               "send its values (scoring it as missing would change the "
                               "decisions)", len(s)))
    return out


def unusable_amounts(values) -> np.ndarray:
    """Which rows hold no usable cost of a miss: missing, not a number, infinite or negative.

    The missing-amount rule (:mod:`tasks.decision.costs`): such a row is an error wherever
    costs are counted (training, scoring, monitoring), never an amount of 0.
    """
    amounts = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    return ~np.isfinite(amounts) | (amounts < 0)
