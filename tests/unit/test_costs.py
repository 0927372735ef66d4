"""Tests of the one cost type: built from the config and from a version's metadata, the
normalised cost, and the missing-amount rule, the same in training, serving and monitoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from schemas.config import Costs, MonitoringConfig
from schemas.errors import DataError, ValidationFailed
from schemas.inference import infer_input_schema
from schemas.scored import DECISION, SCORE
from tasks.data.validation import validate_training_data
from tasks.decision.costs import DecisionCosts, normalised
from tasks.decision.served_classifier import decide
from tasks.monitor.verdict import judge

MONEY = Costs(fn_cost=10, fp_cost=5, fn_cost_column="amount")


def table(amounts) -> pd.DataFrame:
    """Forty rows, a rare label, a feature and each row's amount."""
    rng = np.random.default_rng(0)
    n = len(amounts)
    y = np.r_[np.ones(n // 4, int), np.zeros(n - n // 4, int)]
    return pd.DataFrame({"x": rng.normal(size=n) + y, "amount": amounts, "label": y})


def test_config_and_metadata_build_the_same_costs():
    """Check that the config's costs and what a version records of them (model_dump, as
    metadata.json holds) build the same type, bound to rows the same way."""
    rows = table(np.arange(40, dtype=float))
    from_config = DecisionCosts.from_config(MONEY).for_rows(rows)
    from_meta = DecisionCosts.from_meta(MONEY.model_dump()).for_rows(rows)
    y, d = rows["label"].to_numpy(), rows["x"].to_numpy() > 0.5
    assert from_config.expected(y, d) == from_meta.expected(y, d)
    np.testing.assert_array_equal(from_config.fn_costs, rows["amount"].to_numpy())
    assert DecisionCosts.from_meta({"fn_cost": 10.0, "fp_cost": 1.0}).fn_cost_column is None


def test_normalised_cost_divides_by_never_flagging():
    """Check the normalised cost on a brute-force example, and its value when nothing can be
    missed: NaN (or the caller's choice) for one figure, the cost itself along a curve."""
    costs = DecisionCosts(fn_cost=10, fp_cost=1)
    y, d = np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])
    assert costs.normalised(y, d) == (10 + 1) / 20
    assert np.isnan(costs.normalised([0, 0], [0, 1]))
    assert normalised(3.0, 0.0, empty=None) is None
    np.testing.assert_array_equal(normalised(np.array([2.0, 4.0]), np.array([4.0, 0.0])),
                                  [0.5, 4.0])


def test_decision_rule_flags_scores_at_the_threshold():
    """Check that a score equal to the threshold is flagged, and a grid broadcasts."""
    assert decide([0.1, 0.3, 0.5], 0.3).tolist() == [False, True, True]
    assert decide(np.array([[0.2, 0.6]]), np.array([[0.5], [0.1]])).tolist() == [
        [False, True], [True, True]]


@pytest.mark.parametrize("amount", [np.nan, "n/a", -5.0])
def test_training_and_monitoring_treat_a_missing_amount_alike(amount):
    """Check that a row without a usable amount (missing, not a number, negative) stops
    training and monitoring alike, naming the column and how many rows lack it: it is never
    counted as 0, which would understate what a missed positive costs."""
    amounts = pd.Series(np.arange(1, 41, dtype=float), dtype=object)
    amounts[3] = amount
    rows = table(amounts)
    with pytest.raises(ValidationFailed) as training:
        validate_training_data(rows, label="label", positive="1", test_size=0.25, n_folds=2,
                               cost_column="amount")
    failure = training.value.failures.query("check == 'cost_column_values'")
    assert failure["count"].tolist() == [1]

    schema = infer_input_schema(rows.assign(amount=1.0), label="label",
                                positive="1", negative="0")
    scored = rows.assign(**{SCORE: rows["x"].rank(pct=True), DECISION: 0})
    reference = scored.assign(amount=1.0)
    y = rows["label"].to_numpy(dtype=float)
    costs = DecisionCosts.from_meta(MONEY.model_dump())
    with pytest.raises(DataError, match=r"'amount'.* on 1 of 40 rows") as monitoring:
        judge(scored, y, np.ones(len(rows), bool), reference, threshold=0.5, schema=schema,
              costs=costs, config=MonitoringConfig(data="batch.csv"))
    assert monitoring.value.exit_code == training.value.exit_code == 2
    # the same rows with every amount present are judged, in money
    judged = judge(scored.assign(amount=1.0), y, np.ones(len(rows), bool), reference,
                   threshold=0.5, schema=schema, costs=costs,
                   config=MonitoringConfig(data="batch.csv"))
    assert judged.cost["batch"]["per_row_fn_cost"]
