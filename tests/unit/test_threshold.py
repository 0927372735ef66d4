"""Tests of the cost-based threshold."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.threshold import choose_threshold, cost_curve, expected_cost


def brute_force(y, s, fn_cost, fp_cost):
    candidates = np.concatenate([np.unique(s), [np.inf]])
    return min(expected_cost(y, s >= t, fn_cost=fn_cost, fp_cost=fp_cost) for t in candidates)


def test_threshold_minimises_cost_on_simple_case():
    """Check that the chosen threshold gives the minimum cost and sits between scores."""
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    choice = choose_threshold(y, s, fn_cost=10, fp_cost=1)
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
    choice = choose_threshold(y, s, fn_cost=fn_cost, fp_cost=fp_cost)
    realised = expected_cost(y, s >= choice.threshold, fn_cost=fn_cost, fp_cost=fp_cost)
    assert realised == pytest.approx(choice.cost)
    assert choice.cost == pytest.approx(brute_force(y, s, fn_cost, fp_cost))


def test_expensive_misses_flag_everything_and_cheap_misses_flag_nothing():
    """Check the two extremes: huge FN cost flags all rows, huge FP cost flags none."""
    y = np.array([1, 0, 0, 1, 0])
    s = np.array([0.2, 0.3, 0.5, 0.6, 0.9])
    assert choose_threshold(y, s, fn_cost=1000, fp_cost=1).flagged == 5
    none = choose_threshold(y, s, fn_cost=1, fp_cost=1000)
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
        choose_threshold(np.array(y), np.array(s), **kwargs)


def test_cost_curve_is_one_when_nothing_flagged():
    """Check that the normalised cost curve is 1.0 where no row is flagged."""
    grid, cost = cost_curve([0, 1, 1], [0.1, 0.2, 0.3], fn_cost=10, fp_cost=1, points=11)
    assert cost[-1] == pytest.approx(1.0) and grid[0] == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5))
def test_thresholds_without_a_group_match_a_search_on_the_other_rows(seed, decimals):
    """Check that the one-sort search per held-out group gives exactly choose_threshold's
    answer on the remaining rows, ties in the scores included."""
    from tasks.threshold import choose_thresholds_without

    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 300))
    y = (rng.random(n) < 0.2).astype(int)
    s = np.round(rng.random(n) * 0.6 + 0.4 * y * rng.random(n), decimals)
    groups = [np.array([], dtype=int)] + np.array_split(rng.permutation(n), 3)
    got = choose_thresholds_without(y, s, groups, fn_cost=7.0, fp_cost=2.0)
    for held, choice in zip(groups, got, strict=True):
        keep = np.setdiff1d(np.arange(n), held)
        if y[keep].min() == y[keep].max():
            continue
        assert choice == choose_threshold(y[keep], s[keep], fn_cost=7.0, fp_cost=2.0)
