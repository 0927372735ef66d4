"""Tests of the imbalance-aware metrics."""

import numpy as np
import pytest

from tasks.decision.costs import DecisionCosts
from tasks.judge.metrics import evaluate_scores, metric_table, metrics_markdown


def test_metrics_on_hand_computed_case():
    """Check recall, precision, cost and normalised cost against hand-computed values."""
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.3])
    m = evaluate_scores(y, s, threshold=0.5, costs=DecisionCosts(fn_cost=10, fp_cost=1))
    at = m["at_threshold"]
    assert at["confusion_matrix"] == {"tn": 6, "fp": 1, "fn": 1, "tp": 2}
    assert at["recall"] == pytest.approx(2 / 3)
    assert at["precision"] == pytest.approx(2 / 3)
    assert at["expected_cost"] == 11
    assert at["normalised_cost"] == pytest.approx(11 / 30)
    assert at["g_mean"] == pytest.approx(np.sqrt(2 / 3 * 6 / 7))
    assert m["positives"] == 3 and 0 < m["pr_auc"] <= 1


def test_metric_table_and_markdown_show_both_thresholds():
    """Check that the table and markdown report the chosen threshold beside 0.5."""
    y = np.array([1, 0, 0, 1, 0])
    s = np.array([0.4, 0.1, 0.2, 0.8, 0.3])
    m = evaluate_scores(y, s, threshold=0.35, costs=DecisionCosts(fn_cost=10, fp_cost=1))
    table = metric_table(m)
    row = table.set_index("metric").loc["recall"]
    assert row["chosen"] == 1.0 and row["at_0_5"] == 0.5
    assert "threshold 0.5" in metrics_markdown(m)
