"""Value checks that a column's type does not catch (tasks/data/value_checks.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from schemas.inference import infer_input_schema
from tasks.data.value_checks import (
    batch_value_failures,
    date_text_failures,
    float32_range_failures,
    nested_failures,
)


def test_dates_as_text_are_told_from_categories():
    """Check that many distinct ISO dates as text are flagged, while months, ids and words
    are not."""
    n = 300
    df = pd.DataFrame({
        "day": pd.date_range("2024-01-01", periods=n).strftime("%Y-%m-%d"),
        "stamp": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%dT%H:%M"),
        "month": np.resize(pd.date_range("2024-01", periods=24, freq="MS").strftime("%Y-%m"),
                           n),
        "id": [f"{20240000 + i}" for i in range(n)],
        "word": [f"w{i}" for i in range(n)],
    })
    assert [f["column"] for f in date_text_failures(df, df.columns)] == ["day", "stamp"]


def test_float32_range_and_nested_values():
    """Check that finite values beyond float32 and list cells are flagged, not ordinary
    values, infinities (another check) or missing values."""
    df = pd.DataFrame({"x": [1.0, 3e38, -1e308, np.inf, np.nan], "y": [1.0] * 5,
                       "tags": [[1], None, [2], [3], [4]], "text": list("abcde")})
    (big,) = float32_range_failures(df, ["x", "y"])
    assert big["column"] == "x" and big["count"] == 1
    assert [f["column"] for f in nested_failures(df, df.columns)] == ["tags"]


@pytest.mark.parametrize("batch, check", [
    ({"channel": [True, False]}, "categories_not_boolean"),
    ({"amount": [np.nan, np.nan]}, "not_all_missing"),
    ({"amount": [1.0, np.nan]}, None),
    ({"note": [np.nan, np.nan]}, None),  # missing in training too: allowed
    ({"channel": ["web", "yes"]}, None),
])
def test_batch_values_against_the_frozen_schema(batch, check):
    """Check that true/false for a category trained on text, and a never-missing feature
    missing in every row, are refused; partly missing and nullable features are not."""
    train = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "channel": ["web", "pos"] * 2,
                          "note": ["a", None, "b", None], "y": [0, 1, 0, 1]})
    schema = infer_input_schema(train, label="y", positive="1", negative="0")
    base = {"amount": [1.0, 2.0], "channel": ["web", "pos"], "note": ["a", "b"]}
    found = [f["check"] for f in batch_value_failures(pd.DataFrame({**base, **batch}), schema)]
    assert found == ([check] if check else [])
