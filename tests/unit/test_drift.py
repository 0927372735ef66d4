"""Unit tests of the monitoring steps (tasks/data/labels.py, tasks/monitor/recall_drop.py,
reports.py, verdict.py), on constructed numbers and tiny frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, norm

from schemas.errors import DataError
from schemas.inference import FeatureSpec, InputSchema
from tasks.data.labels import binary_labels, matured_mask, usable_labels
from tasks.decision.costs import DecisionCosts
from tasks.monitor._evidently_snapshot import drift_summary
from tasks.monitor.recall_drop import (
    CANNOT_JUDGE,
    DRIFT,
    NO_DRIFT,
    _restricted_mle,
    decide_recall_drift,
    difference_upper_bound,
    recall_drop_pvalue,
    score_statistic,
)
from tasks.monitor.reports import report_folder, save_snapshot
from tasks.monitor.verdict import classification_figures, cost_figures, verdict_line

SCHEMA = InputSchema(label="is_fraud", positive="1", negative="0",
                     features=[FeatureSpec(name="amount", kind="numeric", dtype="float64")])

COSTS = DecisionCosts(fn_cost=10, fp_cost=1)


def decide(bd, bp, rd, rp, **kw):
    return decide_recall_drift(batch_detected=bd, batch_positives=bp, reference_detected=rd,
                               reference_positives=rp, **kw)


# -- the decision --------------------------------------------------------------------------------
def test_clear_drop_is_drift():
    """Check that recall falling from 0.80 to 0.40 on 100 positives each side is drift."""
    result = decide(40, 100, 80, 100)
    assert result.status == DRIFT
    assert result.p_value < 1e-6
    assert result.diff_upper_bound < -result.tolerance
    assert result.batch_recall == pytest.approx(0.4)
    assert result.reference_recall == pytest.approx(0.8)


def test_same_recall_is_no_drift():
    """Check that a batch with the reference's recall is no drift, with p-value above 0.5."""
    result = decide(160, 200, 80, 100)
    assert result.status == NO_DRIFT
    assert result.p_value > 0.5
    assert result.diff_upper_bound > 0


def test_five_positives_refused_by_default():
    """Check that five matured positives are refused under the default minimum of 20."""
    result = decide(1, 5, 80, 100)
    assert result.status == CANNOT_JUDGE
    assert "only 5 matured positives" in result.reason and "20" in result.reason
    assert result.p_value is None


def test_five_positives_noise_raises_no_alarm():
    """Check that 3 of 5 positives caught (vs 0.8) is no alarm when allowed to judge."""
    result = decide(3, 5, 80, 100, min_positives=1)
    assert result.status == NO_DRIFT
    assert result.p_value > 0.1


def test_five_positives_unchanged_recall_rarely_alarms():
    """Check that five positives at the reference's own recall alarm less than 5% of the time."""
    reference = (400, 500)  # recall 0.8, well measured
    rate = sum(binom.pmf(x, 5, 0.8) for x in range(6)
               if decide(x, 5, *reference, min_positives=1).status == DRIFT)
    assert rate <= 0.05
    assert decide(2, 5, *reference, min_positives=1).status == NO_DRIFT  # 2 of 5: noise


@pytest.mark.parametrize("n1, n2, recall", [(5, 58, 0.95), (5, 100, 0.8), (20, 58, 0.95)])
def test_false_alarm_rate_at_the_tolerance_is_near_alpha(n1, n2, recall):
    """Check that when recall dropped by exactly the tolerance, alarms stay near 5%."""
    tol, pb = 0.05, recall - 0.05
    size = sum(
        binom.pmf(x1, n1, pb) * binom.pmf(x2, n2, recall)
        for x1 in range(n1 + 1) for x2 in range(n2 + 1)
        if recall_drop_pvalue(x1, n1, x2, n2, delta=-tol) < 0.05
    )
    assert size <= 0.06


@pytest.mark.parametrize("positives, status", [(19, CANNOT_JUDGE), (20, DRIFT)])
def test_refusal_below_min_positives(positives, status):
    """Check that fewer matured positives than min_positives refuses, and that many judges."""
    assert decide(0, positives, 80, 100, min_positives=20).status == status


def test_reference_without_positives_cannot_judge():
    """Check that a reference with no positives cannot be compared with."""
    result = decide(10, 30, 0, 0)
    assert result.status == CANNOT_JUDGE
    assert "reference has no positives" in result.reason


def test_drop_within_tolerance_is_no_drift():
    """Check that a small, well-measured drop inside the tolerance is not drift, outside it is."""
    small = decide(7700, 10_000, 8000, 10_000, tolerance=0.05)
    assert small.status == NO_DRIFT
    assert decide(7700, 10_000, 8000, 10_000, tolerance=0.01).status == DRIFT


def test_more_positives_make_the_same_drop_significant():
    """Check that the test accounts for counts: a 0.8 -> 0.6 drop alarms on 500, not on 10."""
    assert decide(6, 10, 80, 100, min_positives=1).status == NO_DRIFT
    assert decide(300, 500, 400, 500).status == DRIFT


@pytest.mark.parametrize("kwargs, err_msg", [
    ({"batch_detected": 6, "batch_positives": 5}, "batch detected positives"),
    ({"batch_detected": -1, "batch_positives": 5}, "batch detected positives"),
    ({"reference_detected": 11, "reference_positives": 10}, "reference detected positives"),
])
def test_impossible_counts_raise(kwargs, err_msg):
    """Check that counts where detected exceeds positives (or is negative) are refused."""
    args = {"batch_detected": 1, "batch_positives": 5, "reference_detected": 8,
            "reference_positives": 10, **kwargs}
    with pytest.raises(ValueError, match=err_msg):
        decide_recall_drift(**args)


@pytest.mark.parametrize("x1, n1, x2, n2, delta", [
    (3, 5, 80, 100, -0.05), (129, 314, 46, 58, -0.05), (10, 50, 30, 40, -0.1),
    (0, 20, 58, 58, -0.05), (20, 20, 0, 58, 0.3),
])
def test_restricted_mle_maximises_likelihood(x1, n1, x2, n2, delta):
    """Check that the closed-form restricted MLE matches a brute-force likelihood maximum."""
    p1, p2 = (float(v) for v in _restricted_mle(x1, n1, x2, n2, delta))
    assert p1 - p2 == pytest.approx(delta, abs=1e-9)
    grid = np.linspace(max(0, -delta) + 1e-9, min(1, 1 - delta) - 1e-9, 200_001)
    q1 = grid + delta
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = (x1 * np.log(q1) + (n1 - x1) * np.log1p(-q1) + x2 * np.log(grid)
              + (n2 - x2) * np.log1p(-grid))
    best = grid[np.nanargmax(ll)]
    assert p2 == pytest.approx(best, abs=1e-4)


def test_pvalue_and_bound_give_the_same_decision():
    """Check that p < 1 - confidence exactly when the upper bound lies below -tolerance."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        n1, n2 = (int(v) for v in rng.integers(1, 150, 2))
        x1, x2 = int(rng.integers(0, n1 + 1)), int(rng.integers(0, n2 + 1))
        for tol in (0.0, 0.05, 0.2):
            p = recall_drop_pvalue(x1, n1, x2, n2, delta=-tol)
            bound = difference_upper_bound(x1, n1, x2, n2, confidence=0.95)
            assert (p < 0.05) == (bound < -tol), (x1, n1, x2, n2, tol, p, bound)


def test_normal_approximation_used_for_large_counts():
    """Check that huge counts fall back to the normal approximation and agree with the sum."""
    exact = recall_drop_pvalue(700, 1000, 760, 1000, delta=-0.05)
    approx = recall_drop_pvalue(700, 1000, 760, 1000, delta=-0.05, max_cells=1)
    assert approx == pytest.approx(exact, abs=0.01)
    z = float(score_statistic(700, 1000, 760, 1000, delta=-0.05))
    assert approx == pytest.approx(norm.cdf(z))


# -- late labels -----------------------------------------------------------------------------------
def test_label_time_maturity_with_delay():
    """Check that labels younger than the delay, or without a time, are not matured."""
    df = pd.DataFrame({"t": ["2024-01-01T00:00:00", "2024-01-03", "2024-01-09", None]})
    mask = matured_mask(df, label_time_column="t", delay_days=7, as_of="2024-01-10")
    assert mask.tolist() == [True, True, False, False]
    assert matured_mask(df, label_time_column="t", delay_days=0,
                        as_of="2024-01-10").tolist() == [True, True, True, False]


def test_label_time_zones_are_compared_in_utc():
    """Check that zone-aware times and a naive as_of (taken as UTC) compare correctly."""
    df = pd.DataFrame({"t": ["2024-01-10T01:00:00+02:00", "2024-01-10T01:00:00-02:00"]})
    mask = matured_mask(df, label_time_column="t", as_of="2024-01-10T00:00:00")
    assert mask.tolist() == [True, False]


@pytest.mark.parametrize("values, expected", [
    ([True, False, None], [True, False, False]),
    ([1, 0, np.nan], [True, False, False]),
    (["yes", "no", None], [True, False, False]),
    (["True", "false", ""], [True, False, False]),
])
def test_label_available_flag(values, expected):
    """Check that bool, 0/1 and yes/no flags are read, missing meaning not available."""
    df = pd.DataFrame({"known": values})
    assert matured_mask(df, label_available_column="known").tolist() == expected


def test_flag_and_time_combine():
    """Check that a row needs both the flag and an old enough label time to be matured."""
    df = pd.DataFrame({"known": [True, True, False],
                       "t": ["2024-01-01", "2024-01-09", "2024-01-01"]})
    mask = matured_mask(df, label_available_column="known", label_time_column="t",
                        delay_days=3, as_of="2024-01-10")
    assert mask.tolist() == [True, False, False]


@pytest.mark.parametrize("df, kwargs, err_msg", [
    (pd.DataFrame({"a": [1]}), {"label_time_column": "t"}, "label_time_column 't' is not a col"),
    (pd.DataFrame({"a": [1]}), {"label_available_column": "k"}, "label_available_column 'k'"),
    (pd.DataFrame({"t": ["2024-01-01", "soon"]}), {"label_time_column": "t"},
     "1 values are not"),
    (pd.DataFrame({"t": [1_700_000_000]}), {"label_time_column": "t"}, "got numbers"),
    (pd.DataFrame({"k": ["yes", "maybe"]}), {"label_available_column": "k"}, "maybe"),
])
def test_maturity_options_errors(df, kwargs, err_msg):
    """Check that missing or malformed maturity columns are refused with a clear message."""
    with pytest.raises(DataError, match=err_msg):
        matured_mask(df, **kwargs)


def test_binary_labels_numeric_text_and_missing():
    """Check that 1.0 reads as the positive '1', missing stays NaN, unknown values fail."""
    y = binary_labels(pd.Series([1.0, 0.0, np.nan, 1.0], name="is_fraud"), positive="1",
                      negative="0")
    assert np.isnan(y[2]) and y[[0, 1, 3]].tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(DataError, match="2 rows hold"):
        binary_labels(pd.Series(["1", "0", "x", "x"], name="is_fraud"), positive="1",
                      negative="0")


def test_recall_counts_only_matured_rows():
    """Check that immature labels are left out: drift hidden among them does not count."""
    # 40 matured positives, 32 caught (0.8); 40 recent positives, all missed.
    n = 80
    df = pd.DataFrame({
        "amount": np.ones(n),
        "is_fraud": [1] * n,
        "label_time": ["2024-01-01"] * 40 + ["2024-03-01"] * 40,
    })
    decisions = np.array([1] * 32 + [0] * 8 + [0] * 40)
    y, usable = usable_labels(df, schema=SCHEMA, label_time_column="label_time",
                              delay_days=30, as_of="2024-03-05")
    assert usable.sum() == 40
    figures = classification_figures(y[usable], decisions[usable])
    assert figures["recall"] == pytest.approx(0.8)
    matured = decide(figures["detected"], figures["positives"], 80, 100)
    assert matured.status == NO_DRIFT
    everything = classification_figures(y, decisions)
    assert decide(everything["detected"], everything["positives"], 80, 100).status == DRIFT


def test_unlabelled_rows_are_not_usable():
    """Check that rows whose label is still empty never judge the model."""
    df = pd.DataFrame({"amount": [1.0, 2.0, 3.0], "is_fraud": [1, None, 0]})
    y, usable = usable_labels(df, schema=SCHEMA)
    assert usable.tolist() == [True, False, True]


def test_missing_label_column_is_refused():
    """Check that a batch without the label column fails, naming the column."""
    with pytest.raises(DataError, match="needs the label column 'is_fraud'"):
        usable_labels(pd.DataFrame({"amount": [1.0]}), schema=SCHEMA)


# -- figures and reports ---------------------------------------------------------------------------
def test_classification_and_cost_figures():
    """Check recall, precision and expected cost on a hand-counted example."""
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    d = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    fig = classification_figures(y, d)
    assert (fig["positives"], fig["detected"], fig["flagged"]) == (4, 3, 5)
    assert fig["recall"] == pytest.approx(0.75) and fig["precision"] == pytest.approx(0.6)
    cost = cost_figures(y, d, costs=COSTS)
    assert (cost["fn"], cost["fp"]) == (1, 2)
    assert cost["expected_cost"] == 12.0
    assert cost["normalised_cost"] == pytest.approx(12 / 40)
    assert cost["cost_per_row"] == pytest.approx(1.2)


def test_figures_without_positives_have_no_recall():
    """Check that recall is None, not 0 or NaN, when there are no positives."""
    assert classification_figures([0, 0], [0, 1])["recall"] is None
    assert cost_figures([0, 0], [0, 1], costs=COSTS)["normalised_cost"] is None


def test_data_drift_summary_reads_tests():
    """Check that drifted columns come from the failed ValueDrift tests of a snapshot dict."""
    snap = {
        "metrics": [
            {"id": "a", "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
             "value": {"count": 1.0, "share": 0.5}},
            {"id": "b", "config": {"type": "evidently:metric_v2:ValueDrift", "column": "x",
                                   "method": "psi", "threshold": 0.1}, "value": 0.4},
            {"id": "c", "config": {"type": "evidently:metric_v2:ValueDrift", "column": "z",
                                   "method": "psi", "threshold": 0.1}, "value": 0.01},
        ],
        "tests": [{"metric_config": {"metric_id": "b"}, "status": "FAIL"},
                  {"metric_config": {"metric_id": "c"}, "status": "SUCCESS"}],
    }
    summary = drift_summary(snap)
    assert summary["drifted_columns"] == ["x"]
    assert summary["drift_share"] == 0.5
    assert [c["drifted"] for c in summary["columns"]] == [True, False]


class _SilentSnapshot:
    """Mimics evidently writing nothing (what save_html does when given a Path)."""

    def save_html(self, filename):
        pass

    def save_json(self, filename):
        pass


def test_save_snapshot_refuses_a_silent_no_op(tmp_path):
    """Check that a report that was not written is an error, not a silent success."""
    with pytest.raises(OSError, match="did not write"):
        save_snapshot(_SilentSnapshot(), tmp_path, "quality")


def test_report_folders_are_unique(tmp_path):
    """Check that two monitoring runs in the same second get different folders."""
    first, second = report_folder(tmp_path), report_folder(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("monitor-")


def test_verdict_line_is_one_line():
    """Check that the verdict is a single line naming the status, model and figures."""
    decision = decide(40, 100, 80, 100).as_dict()
    result = {
        "name": "demo", "version": "v0001", "decision": decision,
        "batch": classification_figures([1] * 100, [1] * 40 + [0] * 60),
        "reference": classification_figures([1] * 100, [1] * 80 + [0] * 20),
        "cost": {"batch": cost_figures([1] * 100, [1] * 40 + [0] * 60, costs=COSTS)},
        "data_drift": {"drifted_columns": ["x"], "columns": [{}, {}]},
        "reports": {"quality_html": "/r/quality.html"},
    }
    line = verdict_line(result)
    assert "\n" not in line
    assert line.startswith("DRIFT demo v0001: minority recall 0.400")
    assert "1/2 input columns drifted" in line and "/r/quality.html" in line
    assert not math.isnan(decision["p_value"])


def test_monitoring_costs_in_money_match_brute_force():
    """Check the realised and the estimated cost with per-row miss costs against brute force,
    and that a batch without the cost column is a clear error."""
    from tasks.monitor.label_free_estimate import expected_figures

    y, d = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 0])
    amount = np.array([100.0, 40.0, 7.0, 3.0, 60.0])
    rows = pd.DataFrame({"amount": amount})
    costs = DecisionCosts.from_meta({"fn_cost": 10.0, "fp_cost": 5.0, "fn_cost_column": "amount"})
    cost = cost_figures(y, d, costs=costs.for_rows(rows))
    assert cost["expected_cost"] == pytest.approx(40 + 60 + 5 * 1)
    assert cost["normalised_cost"] == pytest.approx(105 / 200) and cost["per_row_fn_cost"]
    fixed = DecisionCosts.from_meta({"fn_cost": 10.0, "fp_cost": 1.0})
    assert not fixed.for_rows(rows).per_row
    with pytest.raises(DataError, match="column 'amount'"):
        costs.for_rows(rows.rename(columns={"amount": "x"}))
    p = np.array([0.9, 0.5, 0.2, 0.1, 0.4])
    est = expected_figures(p, d, costs=costs.for_rows(rows))
    missed = (p * amount)[d == 0].sum()
    false_alarms = (1 - p)[d == 1].sum()
    assert est["cost"] == pytest.approx(missed + 5 * false_alarms)
    assert est["normalised"] == pytest.approx(est["cost"] / (p * amount).sum())
