"""Validation of training data: every failure found at once, as a table, before any training."""

from __future__ import annotations

import gc
import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas.errors import ValidationFailed
from schemas.inference import (
    InputSchema,
    infer_input_schema,
    load_schema_model,
    schema_from_model,
)
from tasks.data.value_checks import (
    batch_value_failures,
    nested_failures,
    training_value_failures,
    unusable_amounts,
)
from tasks.data.value_checks import failure as _failure

logger = logging.getLogger(__name__)

FAILURE_COLUMNS = ["column", "check", "problem", "count", "examples"]
NUMERIC_TEXT_SHARE = 0.9
BOOLEAN_TEXT = frozenset({"true", "false"})


@dataclass
class LabelledData:
    """Validated training data: the table (label column included), 0/1 labels and the schema.

    ``X`` is not copied to drop the label: pipelines select ``schema.feature_names``.
    """

    X: pd.DataFrame | None
    y: np.ndarray
    schema: InputSchema

    def release(self) -> None:
        """Let go of the table once the split's parts (copies) exist.

        Prefect keeps a finished task's context, parameters included, for a moment after the
        task (until its events are sent), so the split task would keep the whole table alive
        past the point where its memory is handed back; through this emptied object it does
        not. The labels and the schema stay.
        """
        self.X = None


def min_positives_needed(*, test_size: float, n_folds: int) -> int:
    """Smallest class size that leaves n_folds+1 rows in train and one in test."""
    return max(math.ceil((n_folds + 1) / (1 - test_size)), math.ceil(1 / test_size))


def resolve_label(
    labels: pd.Series, *, label: str, positive: str | None, needed: int
) -> tuple[np.ndarray | None, str | None, str | None, list[dict]]:
    """Map the label column to 0/1 with ``positive`` as 1, checking it is a usable binary label.

    Returns:
        (y, positive, negative, failures): y is None when there are failures.
    """
    failures = []
    # work on the distinct values, not on every row: one hash pass over the column
    codes, uniques = pd.factorize(labels, use_na_sentinel=True)
    n_null = int(np.count_nonzero(codes < 0))
    if n_null == len(labels):
        return None, None, None, [_failure(label, "label_not_null", "label column is all null",
                                           n_null)]
    if n_null:
        failures.append(_failure(label, "label_not_null",
                                 f"label has {n_null} missing values; drop or fill those rows",
                                 n_null))
    text_of = label_text(pd.Series(uniques)).to_numpy()  # values equal as text are one class
    rows = np.bincount(codes[codes >= 0], minlength=len(uniques))
    counts = (pd.Series(rows, index=text_of).groupby(level=0, sort=False).sum()
              .sort_values(ascending=False, kind="stable"))
    values = counts.index.tolist()
    if len(values) > 2:
        problem = f"label has {len(values)} classes {values[:10]}; rareflow needs exactly two"
        norm = pd.Series(values).str.strip().str.lower()
        clashes = [v for v in values if (norm == v.strip().lower()).sum() > 1]
        if clashes:
            problem += (f"; {clashes} differ only by whitespace or case: clean the label "
                        "(e.g. strip spaces)")
        failures.append(_failure(label, "two_classes", problem, len(values), values))
        return None, None, None, failures
    if len(values) < 2:
        failures.append(_failure(label, "two_classes",
                                 f"label has one class only ({values[0]!r}); "
                                 "rareflow needs exactly two", 1, values))
        return None, None, None, failures
    if positive is None:
        positive = _default_positive(counts)
        logger.info("No positive label given; using %r (%d rows)", positive, counts[positive])
    elif positive not in values:
        match = [v for v in values if v.strip().lower() == str(positive).strip().lower()]
        hint = f"; did you mean {match[0]!r}?" if match else ""
        failures.append(_failure(label, "positive_present",
                                 f"positive value {positive!r} is not in label {label!r}; "
                                 f"its values are {values}{hint}", 1, values))
        return None, None, None, failures
    negative = next(v for v in values if v != positive)
    for value, role in ((positive, "positive"), (negative, "negative")):
        if counts[value] < needed:
            failures.append(_failure(
                label, "enough_rows",
                f"label {label!r} has {counts[value]} {role} rows ({value!r}); the test split "
                f"and CV folds configured need at least {needed}", counts[value]))
    if failures:
        return None, positive, negative, failures
    y = (text_of == positive).astype(np.int8)[codes]
    return y, positive, negative, []


def label_text(labels: pd.Series) -> pd.Series:
    """Labels as text, with 1.0 shown as '1' so numeric labels match '--positive 1'."""
    if pd.api.types.is_bool_dtype(labels):
        return labels.astype(str)
    if pd.api.types.is_numeric_dtype(labels):
        as_float = labels.astype(float)
        if np.all(np.mod(as_float, 1) == 0):
            return as_float.astype(np.int64).astype(str)
        return as_float.astype(str)
    return labels.astype(str)


def _default_positive(counts: pd.Series) -> str:
    values = set(counts.index)
    for pos, neg in (("1", "0"), ("True", "False"), ("yes", "no"), ("Yes", "No")):
        if values == {pos, neg}:
            return pos
    return str(counts.sort_values(kind="stable").index[0])


def mixed_type_failures(df: pd.DataFrame, columns: list | None = None) -> list[dict]:
    """Columns read as text whose values are nearly all numbers: a typo, not a category."""
    failures = []
    for name in df.columns if columns is None else columns:
        s = df[name]
        if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
            continue
        # parse each distinct value once: a category column has few, so this stays cheap
        distinct = pd.Series(s.unique()).dropna()
        if distinct.empty:
            continue
        bad_values = distinct[pd.to_numeric(distinct, errors="coerce").isna()]
        if bad_values.empty or len(bad_values) == len(distinct):
            continue
        n_bad = int(s.isin(bad_values).sum())
        if n_bad <= (1 - NUMERIC_TEXT_SHARE) * int(s.notna().sum()):
            failures.append(_failure(
                name, "numeric_type",
                f"column {name!r} holds numbers but {n_bad} values are not numbers; "
                "fix or blank them", n_bad, bad_values))
    return failures


def cost_column_failures(df: pd.DataFrame, column: str | None) -> list[dict]:
    """The per-row cost column must exist and hold finite numbers >= 0 on every row."""
    if column is None:
        return []
    if column not in df.columns:
        return [_failure(column, "cost_column_present",
                         f"cost column {column!r} (costs.fn_cost_column) is missing; columns "
                         f"are {list(map(str, df.columns))[:20]}")]
    bad = unusable_amounts(df[column])
    if bad.any():
        return [_failure(column, "cost_column_values",
                         f"cost column {column!r} must hold a finite amount >= 0 on every "
                         f"row; {int(bad.sum())} rows do not", int(bad.sum()),
                         df.loc[bad, column].head(3).tolist())]
    return []


def float64_columns(df: pd.DataFrame) -> list:
    """Names of the columns held as float64 (see ``InputSchema.to_pandera``)."""
    return [name for name, dtype in df.dtypes.items() if dtype == np.float64]


def schema_failures(df: pd.DataFrame, schema: pa.DataFrameSchema) -> list[dict]:
    """Run a pandera schema lazily and summarise every failure by column and check.

    pandera would copy the whole table first; it checks a shallow copy in place instead, so
    the only new memory is the columns it coerces (replaced in the copy, never in ``df``).
    """
    try:
        schema.validate(df.copy(deep=False), lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        return summarise_failure_cases(exc.failure_cases)
    return []


def summarise_failure_cases(cases: pd.DataFrame) -> list[dict]:
    """Group pandera's failure_cases table to one row per column and check.

    A column whose values cannot be read as numbers gets one row (the coercion failure):
    pandera's plain dtype row repeats it, and its finite check, run on text, would report
    "infinite values" that are not there.
    """
    rows = []
    missing = cases["check"].astype(str).str.startswith("column_in_dataframe")
    column = cases["column"].astype(str).where(~missing, cases["failure_case"].astype(str))
    cases = cases.assign(column=column.replace("None", "<table>"))
    checks = cases["check"].astype(str)
    wrong_type = set(cases.loc[checks.str.startswith("coerce_dtype"), "column"])
    echo = (checks.str.startswith("dtype") | (checks == "finite")) & cases["column"].isin(
        wrong_type)
    for (column, check), group in cases[~echo].groupby(["column", "check"], sort=False,
                                                       dropna=False):
        examples = group["failure_case"].dropna().unique()
        problem = _describe_check(str(column), str(check))
        rows.append(_failure(column, str(check), problem, len(group), examples))
    return rows


def _is_boolean(value) -> bool:
    return isinstance(value, bool | np.bool_) or (
        isinstance(value, str) and value.strip().lower() in BOOLEAN_TEXT)


def boolean_failures(df: pd.DataFrame, schema: InputSchema) -> list[dict]:
    """Columns trained as numeric that hold booleans or 'True'/'False' text.

    Coercion would read them as 1.0 and 0.0 and score them without a word: a batch whose
    flags replaced the numbers the model learned from.
    """
    failures = []
    for name in schema.numeric:
        if name not in df.columns:
            continue
        s = df[name]
        if pd.api.types.is_bool_dtype(s):
            values = s.dropna().to_numpy(dtype=object)
        elif pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            values = s.dropna().to_numpy(dtype=object)
            values = values[np.fromiter(map(_is_boolean, values), bool, len(values))]
        else:
            continue
        if len(values):
            shown = list(dict.fromkeys(map(repr, values[:1000])))[:3]
            failures.append(_failure(
                name, "numeric_not_boolean",
                f"column {name!r} was numeric in training but holds {len(values)} true/false "
                "values; send the numbers it was trained on (1/0 if that is what they mean)",
                len(values), [s.strip("'") for s in shown]))
    return failures


def _describe_check(column: str, check: str) -> str:
    if check.startswith("column_in_dataframe"):
        return f"column {column!r} is missing"
    if "coerce_dtype" in check or check.startswith("dtype"):
        return f"column {column!r} has values of the wrong type ({check})"
    if check == "finite":
        return f"column {column!r} has infinite values; numbers must be finite"
    if check == "not_all_null":
        return f"column {column!r} is all null; drop it or fill it"
    if "not_nullable" in check:
        return f"column {column!r} has missing values but the schema does not allow them"
    return f"column {column!r} fails {check}"


def failures_table(failures: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(failures, columns=FAILURE_COLUMNS)


def validate_training_data(
    df: pd.DataFrame,
    *,
    label: str,
    positive: str | None,
    test_size: float,
    n_folds: int,
    schema_model: str | None = None,
    cost_column: str | None = None,
) -> LabelledData:
    """Check everything a training set must satisfy and infer (or load) its input schema.

    Every check runs before anything is reported, so a user sees all problems at once.

    Raises:
        ValidationFailed: with ``failures`` a table of column, check, problem, count, examples.
    """
    failures: list[dict] = []
    needed = min_positives_needed(test_size=test_size, n_folds=n_folds)
    if label not in df.columns:
        failures.append(_failure(label, "label_present",
                                 f"label column {label!r} is missing; columns are "
                                 f"{list(map(str, df.columns))[:20]}"))
        y, negative = None, None
    else:
        y, positive, negative, label_failures = resolve_label(
            df[label], label=label, positive=positive, needed=needed)
        failures += label_failures
    features = [c for c in df.columns if c != label]
    if not features:
        failures.append(_failure("<table>", "has_features", "the table has no feature columns"))
    refuse_nested(df, features)
    failures += mixed_type_failures(df, features)
    failures += training_value_failures(df, features)
    failures += cost_column_failures(df, cost_column)
    schema = None
    if schema_model:
        model = load_schema_model(schema_model)
        failures += schema_failures(df, model.to_schema())
        if not failures:
            schema = schema_from_model(model, label=label, positive=positive, negative=negative)
    else:
        schema = infer_input_schema(df, label=label, positive=positive or "?",
                                    negative=negative or "?")
        failures += schema_failures(df, schema.to_pandera(
            training=True, float_columns=float64_columns(df)))
    # validation leaves reference cycles that hold column-sized temporaries (about a quarter
    # of the table): free them now, not at some later collection in the middle of fitting
    gc.collect()
    if failures:
        table = failures_table(failures)
        raise ValidationFailed(_headline(table), table)
    # X is the validated table itself (no copy): the model reads only the schema's features
    return LabelledData(X=df, y=y, schema=schema)


def _headline(table: pd.DataFrame) -> str:
    first = table.iloc[0]["problem"]
    more = len(table) - 1
    return f"validation failed: {first}" + (f" (and {more} more failures)" if more else "")


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(df: pd.DataFrame, *, label: str, positive: str | None, test_size: float,
                  n_folds: int, schema_model: str | None,
                  cost_column: str | None = None) -> LabelledData:
    """Validate; on failure publish the failure table as an artifact, then fail the run."""
    from prefect import get_run_logger

    try:
        return validate_training_data(df, label=label, positive=positive, test_size=test_size,
                                      n_folds=n_folds, schema_model=schema_model,
                                      cost_column=cost_column)
    except ValidationFailed as exc:
        get_run_logger().error("Validation failed:\n%s", exc.failures.to_string(index=False))
        create_table_artifact(
            key="validation-failures",
            table=exc.failures.to_dict(orient="records"),
            description=f"Validation failures: {exc}",
        )
        raise


def refuse_nested(df: pd.DataFrame, columns) -> None:
    """Raise at once for nested columns (lists, structs): no other check can read them."""
    if nested := nested_failures(df, columns):
        table = failures_table(nested)
        raise ValidationFailed(_headline(table), table)


def validate_batch(df: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """Check a batch to score against a version's frozen input schema.

    Missing columns, values of the wrong type and true/false values in a numeric column are
    errors naming the column; categories never seen in training are allowed (scored as
    'unknown') and reported in the log.

    Raises:
        ValidationFailed: with every failure as a table.
    """
    if len(df) == 0:
        raise ValidationFailed("the batch has no rows", failures_table(
            [_failure("<table>", "not_empty", "the batch has no rows")]))
    refuse_nested(df, [name for name in schema.feature_names if name in df.columns])
    failures = boolean_failures(df, schema) + batch_value_failures(df, schema)
    flagged = {f["column"] for f in failures}
    failures += [f for f in schema_failures(df, schema.to_pandera(
        training=False, float_columns=float64_columns(df))) if f["column"] not in flagged]
    if failures:
        table = failures_table(failures)
        raise ValidationFailed(_headline(table), table)
    for f in schema.features:
        if f.kind == "categorical" and f.categories is not None:
            seen = df[f.name].dropna().astype(str)
            unseen = seen[~seen.isin(f.categories)]
            if len(unseen):
                logger.warning("Column %r: %d rows have categories unseen in training (%s); "
                               "scored as unknown", f.name, len(unseen),
                               ", ".join(map(repr, unseen.unique()[:3])))
    return df
