"""Tests of the metric gates and the paired-bootstrap champion comparison."""

import numpy as np
import pytest

from schemas.config import Gates
from tasks.gate import evaluate_gates, paired_bootstrap


def metrics(recall=0.7, pr_auc=0.5, cost=0.4, positives=100, prevalence=0.02):
    return {"positives": positives, "prevalence": prevalence, "pr_auc": pr_auc,
            "at_threshold": {"recall": recall, "normalised_cost": cost}}


def decisions(seed=0, n=5000, pos=200, cand_hit=0.7, champ_hit=0.7, cand_fp=0.05,
              champ_fp=0.05, same=False):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=int)
    y[:pos] = 1
    base = rng.random(n)
    champ = np.where(y == 1, base < champ_hit, base < champ_fp)
    if same:
        return y, champ.copy(), champ
    other = rng.random(n)
    cand = np.where(y == 1, other < cand_hit, other < cand_fp)
    return y, cand, champ


def verdict_for(y, cand, champ, gates=None):
    return evaluate_gates(metrics(), gates or Gates(), y_test=y, cand_decisions=cand,
                          champ_decisions=champ, champion_version="v0001",
                          fn_cost=10, fp_cost=1)


def test_clearly_better_candidate_passes():
    """Check that a clearly cheaper, higher-recall candidate passes the champion gates."""
    y, cand, champ = decisions(cand_hit=0.9, champ_hit=0.6)
    v = verdict_for(y, cand, champ)
    assert v["status"] == "passed"
    assert v["comparison"]["cost_diff_upper"] < 0


def test_clearly_worse_candidate_is_rejected():
    """Check that a clearly costlier, lower-recall candidate is rejected on both gates."""
    y, cand, champ = decisions(cand_hit=0.4, champ_hit=0.8)
    v = verdict_for(y, cand, champ)
    assert v["status"] == "rejected"
    failed = {g["gate"] for g in v["gates"] if not g["passed"]}
    assert failed == {"champion_cost", "champion_recall"}


def test_indistinguishable_candidate_is_judged_within_margin():
    """Check that identical decisions give zero difference and pass the non-inferiority rule."""
    y, cand, champ = decisions(same=True)
    v = verdict_for(y, cand, champ)
    c = v["comparison"]
    assert c["cost_diff"] == 0 and c["cost_diff_upper"] == 0 and c["recall_drop_upper"] == 0
    assert v["status"] == "passed"


def test_noisy_equal_candidate_fails_with_zero_margin():
    """Check that equal-quality but different decisions cannot pass a zero cost margin."""
    y, cand, champ = decisions(seed=4)
    v = verdict_for(y, cand, champ, Gates(cost_margin=0.0, recall_margin=0.0))
    assert v["status"] == "rejected"


def test_too_few_test_positives_refuses_to_judge():
    """Check that a test part with too few positives gives 'refused', not a verdict."""
    v = evaluate_gates(metrics(positives=3), Gates(min_test_positives=10), fn_cost=10,
                       fp_cost=1)
    assert v["status"] == "refused"
    assert "only 3 test positives" in v["gates"][0]["detail"]


@pytest.mark.parametrize(
    "m, gate",
    [
        (metrics(recall=0.1), "min_recall"),
        (metrics(pr_auc=0.01, prevalence=0.02), "min_pr_auc"),
        (metrics(cost=0.99), "max_normalised_cost"),
    ],
)
def test_fixed_gates_reject(m, gate):
    """Check that each fixed minimum rejects a candidate below it."""
    v = evaluate_gates(m, Gates(), fn_cost=10, fp_cost=1)
    assert v["status"] == "rejected"
    assert [g["gate"] for g in v["gates"] if not g["passed"]] == [gate]


def test_champion_that_cannot_score_blocks_promotion():
    """Check that a champion unable to score the rows fails the comparison gate."""
    v = evaluate_gates(metrics(), Gates(), champion_version="v0001",
                       champion_error="missing column 'x'", fn_cost=10, fp_cost=1)
    assert v["status"] == "rejected"


def test_bootstrap_matches_row_resampling():
    """Check that the cell-multinomial bootstrap agrees with a naive row bootstrap."""
    y, cand, champ = decisions(seed=2, n=1500, pos=80, cand_hit=0.75, champ_hit=0.65)
    fast = paired_bootstrap(y, cand, champ, fn_cost=10, fp_cost=1, samples=4000,
                            confidence=0.9, seed=1)
    rng = np.random.default_rng(5)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    diffs = []
    for _ in range(1500):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        yy, a, b = y[idx], cand[idx], champ[idx]
        ca = (10 * np.sum(yy & ~a) + np.sum(~yy.astype(bool) & a)) / (10 * yy.sum())
        cb = (10 * np.sum(yy & ~b) + np.sum(~yy.astype(bool) & b)) / (10 * yy.sum())
        diffs.append(ca - cb)
    assert fast["cost_diff_upper"] == pytest.approx(np.quantile(diffs, 0.9), abs=0.02)
