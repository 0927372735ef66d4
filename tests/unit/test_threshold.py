"""Tests of the cost-based threshold."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.decision.costs import DecisionCosts
from tasks.decision.threshold import choose_threshold, cost_curve


def brute_force(y, s, fn_cost, fp_cost):
    candidates = np.concatenate([np.unique(s), [np.inf]])
    return min(DecisionCosts(fn_cost=fn_cost, fp_cost=fp_cost).expected(y, s >= t)
               for t in candidates)


def test_threshold_minimises_cost_on_simple_case():
    """Check that the chosen threshold gives the minimum cost and sits between scores."""
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    choice = choose_threshold(y, s, costs=DecisionCosts(fn_cost=10, fp_cost=1))
    assert choice.threshold == pytest.approx(0.225)
    assert choice.cost == 1.0 and choice.false_positives == 1 and choice.false_negatives == 0
    assert choice.normalised_cost == pytest.approx(1 / 20)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), min_size=2, max_size=60),
    st.floats(0.5, 50),
    st.floats(0.5, 50),
)
def test_threshold_matches_brute_force(rows, fn_cost, fp_cost):
    """Check that the vectorised search finds the same minimum cost as brute force."""
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows])
    choice = choose_threshold(y, s, costs=DecisionCosts(fn_cost=fn_cost, fp_cost=fp_cost))
    realised = DecisionCosts(fn_cost=fn_cost, fp_cost=fp_cost).expected(y, s >= choice.threshold)
    assert realised == pytest.approx(choice.cost)
    assert choice.cost == pytest.approx(brute_force(y, s, fn_cost, fp_cost))


def test_expensive_misses_flag_everything_and_cheap_misses_flag_nothing():
    """Check the two extremes: huge FN cost flags all rows, huge FP cost flags none."""
    y = np.array([1, 0, 0, 1, 0])
    s = np.array([0.2, 0.3, 0.5, 0.6, 0.9])
    assert choose_threshold(y, s, costs=DecisionCosts(fn_cost=1000, fp_cost=1)).flagged == 5
    none = choose_threshold(y, s, costs=DecisionCosts(fn_cost=1, fp_cost=1000))
    assert none.flagged == 0 and (s >= none.threshold).sum() == 0 and none.threshold <= 1


@pytest.mark.parametrize(
    "y, s, kwargs, err",
    [
        ([0, 1], [0.1, 0.2, 0.3], {"fn_cost": 1, "fp_cost": 1}, "equal length"),
        ([0, 1], [0.1, np.nan], {"fn_cost": 1, "fp_cost": 1}, "finite"),
        ([0, 1], [0.1, 0.2], {"fn_cost": 0, "fp_cost": 1}, "costs must be > 0"),
    ],
)
def test_threshold_rejects_bad_input(y, s, kwargs, err):
    """Check that bad scores or costs raise a clear ValueError."""
    with pytest.raises(ValueError, match=err):
        choose_threshold(np.array(y), np.array(s), costs=DecisionCosts(**kwargs))


def test_cost_curve_is_one_when_nothing_flagged():
    """Check that the normalised cost curve is 1.0 where no row is flagged."""
    grid, cost = cost_curve([0, 1, 1], [0.1, 0.2, 0.3], costs=DecisionCosts(fn_cost=10, fp_cost=1),
                           points=11)
    assert cost[-1] == pytest.approx(1.0) and grid[0] == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5))
def test_thresholds_without_a_group_match_a_search_on_the_other_rows(seed, decimals):
    """Check that the one-sort search per held-out group gives exactly choose_threshold's
    answer on the remaining rows, ties in the scores included."""
    from tasks.decision.threshold import choose_thresholds_without

    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 300))
    y = (rng.random(n) < 0.2).astype(int)
    s = np.round(rng.random(n) * 0.6 + 0.4 * y * rng.random(n), decimals)
    groups = [np.array([], dtype=int)] + np.array_split(rng.permutation(n), 3)
    got = choose_thresholds_without(y, s, groups, costs=DecisionCosts(fn_cost=7.0, fp_cost=2.0))
    for held, choice in zip(groups, got, strict=True):
        keep = np.setdiff1d(np.arange(n), held)
        if y[keep].min() == y[keep].max():
            continue
        assert choice == choose_threshold(y[keep], s[keep],
                                          costs=DecisionCosts(fn_cost=7.0, fp_cost=2.0))


# -- per-row costs and constraints ----------------------------------------------------------
from tasks.decision.threshold import (  # noqa: E402
    InfeasibleConstraint,
    choose_thresholds_without,
)


def brute_force_constrained(y, s, costs):
    """Every possible cut, judged directly: (cost, flagged) of the best feasible one, or None."""
    best = None
    n, positives = len(y), int(np.sum(y))
    for t in np.concatenate([np.unique(s), [np.inf]]):
        d = s >= t
        recall = (d & (y == 1)).sum() / positives if positives else 1.0
        if costs.max_alert_rate is not None and d.sum() > costs.max_alert_rate * n + 1e-9:
            continue
        if costs.min_recall is not None and recall < costs.min_recall - 1e-12:
            continue
        cost = costs.expected(y, d)
        if best is None or cost < best[0] - 1e-9 or (abs(cost - best[0]) <= 1e-9
                                                       and d.sum() < best[1]):
            best = (cost, int(d.sum()))
    return best


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.7, 0.9]),
                       st.floats(0, 500).map(lambda v: round(v, 2))),  # money: cents
                  min_size=2, max_size=40),
    st.floats(0.5, 50),
    st.one_of(st.none(), st.sampled_from([0.05, 0.1, 0.25, 0.5])),
    st.one_of(st.none(), st.sampled_from([0.3, 0.5, 0.8, 1.0])),
    st.booleans(),
)
def test_constrained_per_row_threshold_matches_brute_force(rows, fp_cost, max_alert_rate,
                                                           min_recall, per_row):
    """Check that with per-row miss costs, an alert budget and a recall floor (tied scores
    included) the search finds the brute-force optimum, and refuses exactly when brute force
    finds no feasible threshold."""
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows])
    amounts = np.array([r[2] for r in rows]) if per_row else None
    costs = DecisionCosts(fn_cost=10, fp_cost=fp_cost, fn_costs=amounts,
                          max_alert_rate=max_alert_rate, min_recall=min_recall)
    expected = brute_force_constrained(y, s, costs)
    if expected is None:
        with pytest.raises(InfeasibleConstraint):
            choose_threshold(y, s, costs=costs)
        return
    choice = choose_threshold(y, s, costs=costs)
    assert choice.cost == pytest.approx(expected[0])
    assert choice.flagged == expected[1]
    d = s >= choice.threshold
    assert d.sum() == choice.flagged
    assert costs.expected(y, d) == pytest.approx(choice.cost)


def test_per_row_costs_flag_the_expensive_positive():
    """Check that money, not counts, decides: a large amount is worth its false alarms."""
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    cheap = DecisionCosts(fp_cost=5, fn_costs=np.array([0, 0, 0, 1.0, 1.0]))
    dear = DecisionCosts(fp_cost=5, fn_costs=np.array([0, 0, 0, 100.0, 1.0]))
    assert choose_threshold(y, s, costs=cheap).flagged == 0
    choice = choose_threshold(y, s, costs=dear)  # three false alarms (15) beat missing 100
    assert choice.flagged == 5 and choice.cost == pytest.approx(15)
    assert choice.normalised_cost == pytest.approx(15 / 101)


def test_infeasible_constraints_say_which_and_the_best_reachable():
    """Check that an impossible pair of constraints names both and the best reachable recall,
    and that an alert budget alone is always met (flagging nothing is allowed)."""
    y = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0, 1])
    s = np.linspace(1, 0.1, 10)
    with pytest.raises(InfeasibleConstraint, match=r"min_recall 0.9 cannot be met with "
                                                   r"max_alert_rate 0.2.*best reachable "
                                                   r"recall is 0\.250"):
        choose_threshold(y, s, costs=DecisionCosts(max_alert_rate=0.2, min_recall=0.9))
    assert choose_threshold(y, s, costs=DecisionCosts(max_alert_rate=0.01)).flagged == 0


def test_alert_budget_binds_when_costs_want_more_alerts():
    """Check that the budget caps the alerts even when missing positives costs more."""
    y = np.array([1, 0, 1, 0, 1, 0, 0, 0, 0, 0])
    s = np.linspace(1, 0.1, 10)
    free = choose_threshold(y, s, costs=DecisionCosts(fn_cost=100, fp_cost=1))
    capped = choose_threshold(y, s, costs=DecisionCosts(fn_cost=100, fp_cost=1,
                                                        max_alert_rate=0.3))
    assert free.flagged == 5 and capped.flagged == 3
    assert capped.false_negatives == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from([0.1, 0.4, 0.6, 0.9]),
                          st.floats(0, 100)), min_size=12, max_size=40))
def test_per_row_thresholds_without_groups_match_choose_threshold(rows):
    """Check the one-sort path with per-row costs against choose_threshold on the other rows."""
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows])
    w = np.array([r[2] for r in rows])
    costs = DecisionCosts(fp_cost=3, fn_costs=w)
    groups = [np.arange(0, len(y), 3), np.arange(1, len(y), 3)]
    for held, got in zip(groups, choose_thresholds_without(y, s, groups, costs=costs),
                         strict=True):
        keep = np.setdiff1d(np.arange(len(y)), held)
        want = choose_threshold(y[keep], s[keep], costs=costs.rows(keep))
        assert np.allclose(list(got.as_dict().values()), list(want.as_dict().values()),
                           equal_nan=True)


def test_threshold_between_adjacent_floats_flags_only_the_higher_score():
    """Check that a cut between two adjacent floats (their midpoint rounds to the lower one)
    still flags only the higher score (found by the brute-force property above)."""
    y, s = np.array([0, 1]), np.array([0.0, 5e-324])
    choice = choose_threshold(y, s, costs=DecisionCosts(fn_cost=1.0, fp_cost=1.0))
    assert choice.cost == 0.0 and list(s >= choice.threshold) == [False, True]
