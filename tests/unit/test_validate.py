"""Tests of training-data validation and schema inference."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from schemas.errors import ValidationFailed
from schemas.inference import infer_input_schema
from tasks.data.validation import min_positives_needed, validate_batch, validate_training_data


def frame(n=200, pos=20, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[:pos] = 1
    return pd.DataFrame({
        "x": rng.normal(size=n),
        "k": rng.integers(0, 5, n),
        "colour": rng.choice(["red", "blue", None], n),
        "label": np.where(y == 1, "Yes", "No"),
    })


def check(df, **kw):
    opts = {"label": "label", "positive": "Yes", "test_size": 0.2, "n_folds": 5, **kw}
    return validate_training_data(df, **opts)


def test_valid_data_gives_labels_and_schema():
    """Check that valid data yields 0/1 labels and an inferred schema with column kinds."""
    data = check(frame())
    assert data.y.sum() == 20 and set(np.unique(data.y)) == {0, 1}
    assert data.schema.categorical == ["colour"]
    assert data.schema.numeric == ["x", "k"]
    assert data.schema.positive == "Yes" and data.schema.negative == "No"
    assert "label" not in data.schema.feature_names  # the label is never a model input


@pytest.mark.parametrize(
    "mutate, kw, check_name, text",
    [
        (lambda d: d.drop(columns="label"), {}, "label_present", "label column 'label' is missing"),
        (lambda d: d.assign(label="No"), {}, "two_classes", "one class only"),
        (lambda d: d.assign(label=["No", "Yes", "Maybe", "No"] * 50), {}, "two_classes",
         "3 classes"),
        (lambda d: d.assign(label=np.where(np.arange(200) % 2, "No ", "No")).assign(
            label=lambda x: np.where(np.arange(200) < 20, "Yes", x.label)), {}, "two_classes",
         "differ only by whitespace"),
        (lambda d: d.assign(label=None), {}, "label_not_null", "all null"),
        (lambda d: d, {"positive": "yes!"}, "positive_present", "is not in label"),
        (lambda d: d.assign(label=np.where(np.arange(200) < 5, "Yes", "No")), {}, "enough_rows",
         "need at least 8"),
        (lambda d: d.assign(x=np.nan), {}, "not_all_null", "all null"),
        (lambda d: d.assign(x=np.where(np.arange(200) == 3, np.inf, d.x)), {}, "finite",
         "finite"),
        (lambda d: d.assign(x=d.x.astype(object).where(np.arange(200) != 7, "oops")), {},
         "numeric_type", "holds numbers but 1 values are not numbers"),
    ],
)
def test_bad_training_data_is_reported(mutate, kw, check_name, text):
    """Check that each training-set rule fails with a message naming the problem."""
    with pytest.raises(ValidationFailed) as info:
        check(mutate(frame()), **kw)
    table = info.value.failures
    assert check_name in set(table["check"])
    assert table["problem"].str.contains(text, regex=False).any(), table.to_string()


def test_all_failures_are_reported_at_once():
    """Check that validation is lazy: several problems appear in one failure table."""
    df = frame().assign(x=np.nan, k=np.inf)
    with pytest.raises(ValidationFailed) as info:
        check(df)
    assert {"x", "k"} <= set(info.value.failures["column"])


def test_default_positive_is_one_or_minority():
    """Check that without --positive, 1 is positive for 0/1 labels, else the minority class."""
    df = frame().assign(label=lambda d: (d.label == "Yes").astype(int))
    assert check(df, positive=None).schema.positive == "1"
    assert check(frame(), positive=None).schema.positive == "Yes"


@pytest.mark.parametrize(
    "labels, positive, expected_positive",
    [
        (np.where(np.arange(200) < 20, 1.0, 0.0), "1", "1"),  # floats read as 1 / 0
        (np.arange(200) < 20, None, "True"),  # booleans
        (pd.Categorical(np.where(np.arange(200) < 20, "fraud", "ok"),
                        categories=["fraud", "ok", "unused"]), None, "fraud"),
        (pd.array(np.where(np.arange(200) < 20, 1, 0), dtype="Int64"), None, "1"),
        (np.array(["1" if i < 10 else 1 if i < 20 else 0 for i in range(200)], dtype=object),
         "1", "1"),  # '1' and 1 are one class
    ],
)
def test_label_forms_map_to_zero_one(labels, positive, expected_positive):
    """Check that numeric, boolean, categorical and mixed labels become the same 0/1 vector."""
    data = check(frame().assign(label=labels), positive=positive)
    assert data.schema.positive == expected_positive
    np.testing.assert_array_equal(data.y, (np.arange(200) < 20).astype(int))


def test_validation_leaves_the_table_as_loaded():
    """Check that validating (and coercing integer columns) never changes the caller's frame."""
    df = frame().assign(k=lambda d: d.k.astype(np.int32))
    before = df.copy()
    data = check(df)
    pd.testing.assert_frame_equal(df, before)
    assert data.X is df and df["k"].dtype == np.int32
    batch = df.drop(columns="label").assign(x=lambda d: d.x.astype(np.float32))
    validate_batch(batch, data.schema)
    assert batch["x"].dtype == np.float32


def test_inferred_categories_are_the_values_seen():
    """Check that category sets hold the observed values as text, not unused categories."""
    df = frame().assign(colour=lambda d: pd.Categorical(d.colour,
                                                         categories=["red", "blue", "green"]))
    spec = {f.name: f for f in check(df).schema.features}["colour"]
    assert spec.categories == ["blue", "red"] and spec.nullable


def test_min_positives_needed_grows_with_folds():
    """Check the required class size for a 20% test split and k folds."""
    assert min_positives_needed(test_size=0.2, n_folds=5) == 8
    assert min_positives_needed(test_size=0.2, n_folds=10) > 8


def test_schema_from_dataframe_model_is_used():
    """Check that a hand-written DataFrameModel validates and supplies the column kinds."""
    from tasks.data.demo_tables import make_demo_data

    df = make_demo_data(3000, positive_rate=0.05, seed=1)
    data = validate_training_data(df, label="is_fraud", positive="1", test_size=0.2,
                                  n_folds=5, schema_model="schemas.demo:DemoTransactions")
    assert data.schema.source == "DemoTransactions"
    assert set(data.schema.categorical) == {"merchant_category", "channel", "country"}
    bad = df.assign(hour=df.hour + 30)
    with pytest.raises(ValidationFailed, match="hour"):
        validate_training_data(bad, label="is_fraud", positive="1", test_size=0.2, n_folds=5,
                               schema_model="schemas.demo:DemoTransactions")


def test_inferred_module_source_is_a_working_dataframe_model(tmp_path):
    """Check that `schema infer` output imports and validates the data it came from."""
    df = frame().rename(columns={"x": "total charges"})
    schema = infer_input_schema(df, label="label", positive="Yes", negative="No")
    path = tmp_path / "inferred_schema.py"
    path.write_text(schema.to_module_source(class_name="Churn"))
    spec = importlib.util.spec_from_file_location("inferred_schema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.Churn.validate(df, lazy=True)
    with pytest.raises(Exception, match="colour"):
        module.Churn.validate(df.assign(colour="purple"), lazy=True)


def test_batch_validation_names_missing_and_mistyped_columns():
    """Check that a scoring batch with a missing or mistyped column fails naming it."""
    df = frame()
    schema = validate_training_data(df, label="label", positive="Yes", test_size=0.2,
                                    n_folds=5).schema
    with pytest.raises(ValidationFailed, match="'x' is missing"):
        validate_batch(df.drop(columns="x"), schema)
    with pytest.raises(ValidationFailed, match="'x' has values of the wrong type"):
        validate_batch(df.assign(x="text"), schema)
    validate_batch(df.assign(colour="never-seen"), schema)  # unseen category: allowed


@pytest.mark.parametrize("values", [
    [True, False] * 100,  # a bool column
    pd.array([True, None] * 100, dtype="boolean"),  # pandas' nullable booleans
    ["True", "False"] * 100,  # text, as a CSV of mixed flags gives
    [1.5, " true"] + [2.0] * 198,  # one flag among numbers
    [1.0, True] + [2.0] * 198,  # a Python bool among numbers (True == 1.0 when hashed)
])
def test_booleans_in_a_numeric_column_fail_batch_validation(values):
    """Check that true/false values in a column trained as numeric are a validation failure
    naming the column, not silently scored as 1.0/0.0."""
    df = frame()
    schema = check(df).schema
    batch = df.drop(columns="label").assign(x=values)
    with pytest.raises(ValidationFailed, match="column 'x' was numeric in training but holds "
                                               r"\d+ true/false values") as info:
        validate_batch(batch, schema)
    assert info.value.failures["column"].tolist() == ["x"]


def test_text_in_a_numeric_column_is_one_failure_without_infinite_values():
    """Check that text in a numeric column is reported once, as a type problem, with no
    misleading 'infinite values' row."""
    df = frame()
    schema = check(df).schema
    batch = df.drop(columns="label").assign(x=["oops"] + [1.0] * 199)
    with pytest.raises(ValidationFailed) as info:
        validate_batch(batch, schema)
    table = info.value.failures
    assert table["column"].tolist() == ["x"]
    assert "wrong type" in table["problem"].iloc[0]
    assert not table["problem"].str.contains("infinite").any()
    with pytest.raises(ValidationFailed, match="infinite values"):  # real infinities still are
        validate_batch(df.drop(columns="label").assign(x=np.inf), schema)
