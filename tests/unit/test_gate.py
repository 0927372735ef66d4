"""Tests of the metric gates, their bootstrap bounds, and the paired-bootstrap champion
comparison on fair rows."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from schemas.config import Gates
from tasks.decision.costs import DecisionCosts
from tasks.judge.gate_verdict import Verdict
from tasks.judge.gates import (
    Candidate,
    Champion,
    ap_levels,
    candidate_bootstrap,
    evaluate_gates,
    fair_rows,
    paired_bootstrap,
    weighted_ap,
)
from tasks.judge.metrics import evaluate_scores

POINT = Gates(absolute_gates="point")
COSTS = DecisionCosts(fn_cost=10, fp_cost=1)


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
    return evaluate_gates(Candidate(metrics(), COSTS, y=y, decisions=cand), gates or POINT,
                          champion=Champion("v0001", champ)).as_dict()


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
    v = verdict_for(y, cand, champ, Gates(cost_margin=0.0, recall_margin=0.0,
                                          absolute_gates="point"))
    assert v["status"] == "rejected"


def test_too_few_test_positives_refuses_to_judge():
    """Check that a test part with too few positives gives 'refused', not a verdict."""
    v = evaluate_gates(Candidate(metrics(positives=3), COSTS), Gates(min_test_positives=10))
    assert v.status == "refused"
    assert "only 3 test positives" in v.gates[0].detail


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
    v = evaluate_gates(Candidate(m, COSTS), POINT)
    assert v.status == "rejected"
    assert v.failed == [gate]


@pytest.mark.parametrize("cand_hit, champ_hit", [(0.9, 0.6), (0.4, 0.8)])
def test_shadow_first_sends_a_candidate_that_passed_the_absolute_gates_to_shadow(cand_hit,
                                                                                champ_hit):
    """Check that with gates.shadow_first a candidate that passed the absolute gates is
    refused with the shadow_first gate, whether it won or lost on test rows (the comparison
    stays in the verdict), and that without a champion, or failing an absolute gate, it is
    judged as before."""
    y, cand, champ = decisions(cand_hit=cand_hit, champ_hit=champ_hit)
    first = POINT.model_copy(update={"shadow_first": True})
    v = verdict_for(y, cand, champ, gates=first)
    assert v["status"] == "refused" and v["gates"][-1]["gate"] == "shadow_first"
    assert v["comparison"]["champion"] == "v0001"
    alone = evaluate_gates(Candidate(metrics(), COSTS, y=y, decisions=cand), first)
    assert alone.status == "passed"
    weak = evaluate_gates(Candidate(metrics(recall=0.1), COSTS, y=y, decisions=cand), first,
                          champion=Champion("v0001", champ))
    assert weak.status == "rejected" and "shadow_first" not in weak.failed


def test_champion_that_cannot_score_blocks_promotion():
    """Check that a champion unable to score the rows fails the comparison gate."""
    v = evaluate_gates(Candidate(metrics(), COSTS), POINT,
                       champion=Champion("v0001", error="missing column 'x'"))
    assert v.status == "rejected"


def test_bootstrap_matches_row_resampling():
    """Check that the cell-multinomial bootstrap agrees with a naive row bootstrap."""
    y, cand, champ = decisions(seed=2, n=1500, pos=80, cand_hit=0.75, champ_hit=0.65)
    fast = paired_bootstrap(y, cand, champ, costs=COSTS, samples=4000, confidence=0.9, seed=1)
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


# -- bootstrap bounds of the absolute gates ---------------------------------------------------
@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_level_counts_give_scikit_learns_average_precision(decimals):
    """Check that PR AUC from level counts equals scikit-learn's, with ties and with integer
    row weights (a bootstrap resample)."""
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.05).astype(int)
    scores = rng.random(3000) + 0.4 * y
    if decimals is not None:
        scores = np.round(scores, decimals)
    pos, neg = ap_levels(y, scores)
    assert weighted_ap(pos, neg) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    weights = rng.multinomial(len(y), np.full(len(y), 1 / len(y)))
    keep = weights > 0
    pos_w, neg_w = ap_levels(np.repeat(y[keep], weights[keep]),
                             np.repeat(scores[keep], weights[keep]))
    expected = average_precision_score(y, scores, sample_weight=weights)
    assert weighted_ap(pos_w, neg_w) == pytest.approx(expected, abs=1e-12)


def test_candidate_bounds_match_a_row_bootstrap():
    """Check that the count-based bounds agree with a naive class-stratified row bootstrap."""
    rng = np.random.default_rng(1)
    y = (rng.random(2500) < 0.06).astype(int)
    scores = rng.random(2500) + 0.5 * y
    decisions = scores >= 0.8
    fast = candidate_bootstrap(y, scores, decisions, costs=COSTS, samples=4000,
                               confidence=0.9, seed=2)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    recall, ap, cost = [], [], []
    for _ in range(1000):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        yy, ss, dd = y[idx], scores[idx], decisions[idx]
        recall.append((yy & dd).sum() / yy.sum())
        ap.append(average_precision_score(yy, ss))
        cost.append((10 * (yy & ~dd).sum() + ((1 - yy) & dd).sum()) / (10 * yy.sum()))
    assert fast["recall_lower"] == pytest.approx(np.quantile(recall, 0.1), abs=0.02)
    assert fast["pr_auc_lower"] == pytest.approx(np.quantile(ap, 0.1), abs=0.02)
    assert fast["cost_upper"] == pytest.approx(np.quantile(cost, 0.9), abs=0.03)
    assert fast["pr_auc"] == pytest.approx(average_precision_score(y, scores))


def noise_case():
    """400 test rows, 39 positives, a score with almost no signal: its point PR AUC (0.149)
    beats the prevalence (0.0975) by luck, and so does every point estimate."""
    rng = np.random.default_rng(22)
    y = np.zeros(400, int)
    y[:39] = 1
    scores = rng.random(400) + 0.08 * y
    threshold = float(np.quantile(scores, 0.6))
    m = evaluate_scores(y, scores, threshold=threshold, costs=COSTS)
    return y, scores, scores >= threshold, m


def test_noise_passes_on_points_but_not_on_bounds():
    """Check that a near-random model passing every absolute gate on point estimates is
    rejected when the gates judge bootstrap bounds, and the table shows point and bound."""
    y, scores, decisions, m = noise_case()
    assert m["pr_auc"] > m["prevalence"]
    candidate = Candidate(m, COSTS, y=y, scores=scores, decisions=decisions)
    assert evaluate_gates(candidate, POINT).status == "passed"
    v = evaluate_gates(candidate, Gates()).as_dict()
    assert v["status"] == "rejected"
    rows = {g["gate"]: g for g in v["gates"]}
    assert not rows["max_normalised_cost"]["passed"]
    assert rows["max_normalised_cost"]["point"] == pytest.approx(
        m["at_threshold"]["normalised_cost"])
    assert rows["max_normalised_cost"]["value"] > rows["max_normalised_cost"]["point"]
    assert rows["min_recall"]["value"] < rows["min_recall"]["point"]
    assert "upper 95% bound judged" in rows["max_normalised_cost"]["detail"]
    assert v["bounds"]["pr_auc_lower"] < v["bounds"]["pr_auc"]


def test_a_clear_model_passes_on_bounds():
    """Check that a model with real signal and enough positives passes the bound gates."""
    rng = np.random.default_rng(5)
    y = (rng.random(5000) < 0.03).astype(int)
    scores = np.clip(rng.normal(0.2 + 0.5 * y, 0.15), 0, 1)
    m = evaluate_scores(y, scores, threshold=0.45, costs=COSTS)
    v = evaluate_gates(Candidate(m, COSTS, y=y, scores=scores, decisions=scores >= 0.45),
                       Gates())
    assert v.status == "passed", v.gates


def test_bound_gates_need_the_test_scores():
    """Check that judging bounds without the test rows' scores is an error, not a silent
    fallback to point estimates."""
    with pytest.raises(ValueError, match="needs the candidate's labels, scores"):
        evaluate_gates(Candidate(metrics(), COSTS), Gates())


# -- champion comparison on fair rows ---------------------------------------------------------
def test_fair_rows_leave_out_what_either_model_trained_on():
    """Check that test rows whose content the champion or the candidate trained on are left
    out, and the counts say so."""
    test = np.array([1, 2, 3, 4, 5, 6], dtype=np.uint64)
    mask, overlap = fair_rows(test, champion_train=np.array([2, 3, 9], dtype=np.uint64),
                              candidate_train=np.array([6], dtype=np.uint64))
    assert mask.tolist() == [True, False, False, True, True, False]
    assert overlap["champion_trained_on"] == 2 and overlap["candidate_trained_on"] == 1
    assert overlap["fair_rows"] == 3
    mask, overlap = fair_rows(test, champion_train=None, candidate_train=None)
    assert mask.all() and overlap["champion_trained_on"] is None


def test_champion_is_compared_only_on_rows_it_did_not_train_on():
    """Check that a champion that memorised half the candidate's test rows is judged on the
    other half only: on all rows it would look better and reject an equal candidate."""
    y, cand, champ = decisions(seed=7, n=4000, pos=400, cand_hit=0.7, champ_hit=0.7)
    rows = np.arange(4000, dtype=np.uint64)
    seen = rows[::2]
    champ = np.where(np.isin(rows, seen), y == 1, champ)  # perfect on rows it trained on
    gates = Gates(absolute_gates="point")
    unfair = evaluate_gates(Candidate(metrics(), COSTS, y=y, decisions=cand), gates,
                            champion=Champion("v0001", champ))
    assert unfair.status == "rejected"
    fair = evaluate_gates(Candidate(metrics(), COSTS, y=y, decisions=cand, test_rows=rows,
                                    train_rows=np.array([], dtype=np.uint64)), gates,
                          champion=Champion("v0001", champ, train_rows=seen)).as_dict()
    assert fair["status"] == "passed", fair["gates"]
    overlap = fair["comparison"]["overlap"]
    assert overlap["champion_trained_on"] == 2000 and overlap["fair_rows"] == 2000
    row = next(g for g in fair["gates"] if g["gate"] == "champion_fair_rows")
    assert row["passed"] and "2000 the champion trained on" in row["detail"]


def test_too_few_fair_rows_refuse_the_comparison():
    """Check that when the champion trained on nearly every test row the verdict is
    'refused' (not judged), naming the overlap."""
    y, cand, champ = decisions(seed=8, n=1000, pos=50)
    rows = np.arange(1000, dtype=np.uint64)
    v = evaluate_gates(Candidate(metrics(), COSTS, y=y, decisions=cand, test_rows=rows), POINT,
                       champion=Champion("v0001", champ, train_rows=rows[:990])).as_dict()
    assert v["status"] == "refused"
    row = next(g for g in v["gates"] if g["gate"] == "champion_fair_rows")
    assert not row["passed"] and "too few positives left" in row["detail"]


# ---------------------------------------------------------------- money per row


def test_money_bootstrap_with_equal_amounts_matches_the_count_bootstrap():
    """Check that per-row miss costs that are all equal give the count bootstrap's point
    estimates and nearly its bounds (the two resample differently, so bounds differ a little)."""
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.05).astype(int)
    cand = np.where(y == 1, rng.random(3000) < 0.8, rng.random(3000) < 0.05)
    champ = np.where(y == 1, rng.random(3000) < 0.7, rng.random(3000) < 0.06)
    kw = {"samples": 2000, "confidence": 0.95, "seed": 0}
    per_row = DecisionCosts(fn_cost=10.0, fp_cost=1.0, fn_costs=np.full(len(y), 10.0))
    counts = paired_bootstrap(y, cand, champ, costs=COSTS, **kw)
    money = paired_bootstrap(y, cand, champ, costs=per_row, **kw)
    assert money["cost_diff"] == pytest.approx(counts["cost_diff"])
    assert money["recall_drop"] == pytest.approx(counts["recall_drop"])
    assert money["cost_diff_upper"] == pytest.approx(counts["cost_diff_upper"], abs=0.02)
    scores = np.where(cand, 0.9, 0.1) + rng.random(3000) * 0.01
    one = candidate_bootstrap(y, scores, cand, costs=COSTS, **kw)
    other = candidate_bootstrap(y, scores, cand, costs=per_row, **kw)
    assert other["normalised_cost"] == pytest.approx(one["normalised_cost"])
    assert other["cost_upper"] == pytest.approx(one["cost_upper"], abs=0.02)


def test_money_bootstrap_counts_the_expensive_miss():
    """Check that with amounts the comparison speaks money: a candidate that catches more
    small frauds but misses the one large fraud the champion catches is cheaper by counts and
    dearer in money, and the gate rejects it on money."""
    y = np.r_[np.ones(40, int), np.zeros(2000, int)]
    amounts = np.r_[np.full(39, 10.0), 5000.0, np.zeros(2000)]
    cand = np.r_[np.ones(39, bool), False, np.zeros(2000, bool)]  # misses only the large one
    champ = np.r_[np.ones(30, bool), np.zeros(9, bool), True, np.zeros(2000, bool)]
    kw = {"samples": 2000, "confidence": 0.95, "seed": 0}
    money_costs = DecisionCosts(fn_cost=10.0, fp_cost=1.0, fn_costs=amounts)
    assert paired_bootstrap(y, cand, champ, costs=COSTS, **kw)["cost_diff"] < 0
    money = paired_bootstrap(y, cand, champ, costs=money_costs, **kw)
    assert money["cost_diff"] == pytest.approx((5000 - 90) / amounts.sum())
    assert money["cost_diff_upper"] > 0
    verdict = evaluate_gates(
        Candidate({"positives": 40, "prevalence": 40 / 2040, "pr_auc": 0.9,
                   "at_threshold": {"recall": 39 / 40, "normalised_cost": 5000 / amounts.sum()}},
                  money_costs, y=y, decisions=cand),
        Gates(absolute_gates="point", max_normalised_cost=1.0, min_recall=0.0,
              min_test_positives=10),
        champion=Champion("v0001", champ))
    assert verdict.status == "rejected"
    assert "champion_cost" in verdict.failed


def test_verdict_is_stored_as_the_same_dict_and_read_back():
    """Check that the typed verdict serialises to the dict metadata.json has always held, and
    that a stored verdict (also one recorded before gates had a point estimate) reads back."""
    y, cand, champ = decisions(cand_hit=0.9, champ_hit=0.6)
    stored = verdict_for(y, cand, champ)
    assert set(stored) == {"status", "gates", "comparison", "bounds"}
    assert set(stored["gates"][0]) == {"gate", "passed", "value", "point", "limit", "detail"}
    assert Verdict.from_dict(stored).as_dict() == stored
    old = {"status": "rejected", "gates": [{"gate": "min_recall", "passed": False,
                                            "value": 0.2, "limit": 0.3, "detail": "..."}]}
    (gate,) = Verdict.from_dict(old).gates
    assert (gate.point, gate.value) == (0.2, 0.2) and Verdict.from_dict(old).failed == [
        "min_recall"]
