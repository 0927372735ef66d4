"""Metric gates and the champion comparison (paired bootstrap on the same test rows).

The absolute gates (minimum recall, PR AUC above prevalence, maximum normalised cost) judge a
one-sided bootstrap confidence bound of the candidate's test figure, not its point estimate:
on a few dozen test positives a model that ranks no better than chance can show a PR AUC
above prevalence by luck, and a bound refuses to promote it. The bootstrap resamples rows
within each class, as the champion comparison does; both are computed from counts, so they
stay fast at hundreds of thousands of test rows.

The champion comparison uses only test rows neither model trained on: the champion's
training-row fingerprints (content hashes, :mod:`tasks.data.split`) are matched against the
candidate's test rows, and the overlap is reported in the verdict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import Gates
from schemas.statuses import (
    CHAMPION_COST_GATE,
    CHAMPION_RECALL_GATE,
    FAIR_ROWS_GATE,
    SHADOW_FIRST_GATE,
)
from tasks.decision.capacity import alert_capped, candidate_recall, reachable_recall
from tasks.decision.costs import DecisionCosts, normalised
from tasks.judge.gate_verdict import PASSED, REFUSED, REJECTED, GateResult, Verdict, verdict_table

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """What the gates judge: the candidate's metrics, and its scores and 0/1 decisions on the
    judged rows with their labels and costs (``costs`` bound to those rows).

    ``test_rows`` and ``train_rows`` are content hashes of the candidate's test rows (one per
    row) and training rows: the champion comparison leaves out rows either model trained on.
    """

    metrics: dict
    costs: DecisionCosts
    y: np.ndarray | None = None
    scores: np.ndarray | None = None
    decisions: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    train_rows: np.ndarray | None = None


@dataclass
class Champion:
    """The serving version a candidate is compared with, and its decisions on the test rows.

    ``version`` is None when there is no champion yet; ``error`` says why it could not score;
    ``train_rows`` holds the content hashes of its training rows (None if it kept none).
    """

    version: str | None = None
    decisions: np.ndarray | None = None
    error: str | None = None
    train_rows: np.ndarray | None = None
    scores: np.ndarray | None = None  # the champion's scores of the test rows


def positive_sums(rng, samples: int, vectors: list[np.ndarray], chunk: int = 256
                  ) -> list[np.ndarray]:
    """Row bootstrap over the positives: for each resample (positives drawn with replacement,
    as many as there are), the sum of each of ``vectors`` (one value per positive) over the
    drawn rows. Needed when positives differ in what missing them costs (money per row)."""
    n_pos = len(vectors[0])
    p = np.full(n_pos, 1.0 / max(n_pos, 1))
    out: list[list[np.ndarray]] = [[] for _ in vectors]
    for start in range(0, samples, chunk):
        draws = rng.multinomial(n_pos, p, size=min(chunk, samples - start)).astype(float)
        for acc, v in zip(out, vectors, strict=True):
            acc.append(draws @ v)
    return [np.concatenate(acc) for acc in out]


def positive_misses(rng, pos, a_pos, b_pos, m, *, fn_cost: float, samples: int,
                    per_row: bool) -> tuple:
    """Per resample: each model's hits among the positives, what its misses cost, and what
    missing every positive costs (``pos``: the resampled 2x2 cells; row by row instead when
    positives cost differently)."""
    if not per_row:  # every positive costs the same: the cell counts are enough
        cand_tp, champ_tp = pos[:, 0] + pos[:, 1], pos[:, 0] + pos[:, 2]
        n_pos = len(m)
        return (cand_tp, champ_tp, fn_cost * (n_pos - cand_tp), fn_cost * (n_pos - champ_tp),
                fn_cost * n_pos)
    cand_tp, champ_tp, cand_missed, champ_missed, never = positive_sums(
        rng, samples, [a_pos, b_pos, m * (1 - a_pos), m * (1 - b_pos), m])
    return cand_tp, champ_tp, cand_missed, champ_missed, never


def paired_bootstrap(y, cand_decisions, champ_decisions, *, costs: DecisionCosts,
                     samples: int, confidence: float, seed: int = 0) -> dict:
    """Bootstrap the candidate-minus-champion differences in normalised cost and recall.

    Rows are resampled with replacement within each class (so every resample has the test
    part's positive count) and both models are judged on the same resampled rows. Only the
    2x2 agreement counts per class matter, so each resample is a multinomial draw over those
    four cells: exact for the row bootstrap and fast for any number of rows. With per-row
    ``costs`` (each row's cost of a miss, e.g. its amount) positives are drawn row by row and
    recall is in money (the share of the positives' cost caught), as the model was chosen.

    Returns:
        Point estimates and one-sided bounds: ``cost_diff_upper`` (candidate cost minus
        champion cost; below 0 means the candidate is cheaper) and ``recall_drop_upper``
        (champion recall minus candidate recall).
    """
    y = np.asarray(y).astype(bool)
    a = np.asarray(cand_decisions).astype(bool)
    b = np.asarray(champ_decisions).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    rng = np.random.default_rng(seed)

    def cells(mask):
        return np.array([np.sum(mask & a & b), np.sum(mask & a & ~b),
                         np.sum(mask & ~a & b), np.sum(mask & ~a & ~b)], dtype=float)

    pos_cells, neg_cells = cells(y), cells(~y)
    pos = rng.multinomial(n_pos, pos_cells / max(n_pos, 1), size=samples)
    neg = rng.multinomial(n_neg, neg_cells / max(n_neg, 1), size=samples)
    cand_fp, champ_fp = neg[:, 0] + neg[:, 1], neg[:, 0] + neg[:, 2]  # flags among negatives
    fp_cost = costs.false_alarm_cost  # a sampled negative's false alarm counts 1/rate times
    money = costs.per_row  # money: each positive weighs what it costs
    m = costs.miss_costs(y)[y]
    a_pos, b_pos = a[y].astype(float), b[y].astype(float)
    cand_tp, champ_tp, cand_missed, champ_missed, never = positive_misses(
        rng, pos, a_pos, b_pos, m, fn_cost=costs.fn_cost, samples=samples, per_row=money)
    cost_diff = normalised(cand_missed + fp_cost * cand_fp - champ_missed - fp_cost * champ_fp,
                           never)
    recall_drop = (normalised(cand_missed - champ_missed, never) if money
                   else (champ_tp - cand_tp) / n_pos)
    point_cost = normalised((m @ (1 - a_pos) + fp_cost * neg_cells[:2].sum())
                            - (m @ (1 - b_pos) + fp_cost * neg_cells[[0, 2]].sum()), m.sum())
    point_recall_drop = (normalised(m @ (1 - a_pos) - m @ (1 - b_pos), m.sum()) if money
                         else (pos_cells[[0, 2]].sum() - pos_cells[:2].sum()) / n_pos)
    return {
        "samples": samples,
        "confidence": confidence,
        "cost_diff": float(point_cost),
        "cost_diff_lower": float(np.quantile(cost_diff, 1 - confidence)),
        "cost_diff_upper": float(np.quantile(cost_diff, confidence)),
        "recall_drop": float(point_recall_drop),
        "recall_drop_upper": float(np.quantile(recall_drop, confidence)),
        "p_candidate_cheaper": float(np.mean(cost_diff < 0)),
    }


def ap_levels(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """The counts average precision depends on, one sort of the scores.

    Returns:
        (positives at each distinct score holding any, from the highest score down;
        negatives scored at or above each of those levels but not above the previous one,
        followed by the negatives below the last one)
    """
    y = np.asarray(y).astype(bool)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="mergesort")
    ranked, yy = scores[order], y[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ranked)) + 1]
    pos = np.add.reduceat(yy.astype(np.int64), starts)
    neg = np.add.reduceat((~yy).astype(np.int64), starts)
    keep = pos > 0
    neg_upto = np.cumsum(neg)[keep]
    neg_bins = np.diff(np.r_[0, neg_upto])
    return pos[keep], np.r_[neg_bins, int((~y).sum()) - (neg_upto[-1] if len(neg_upto) else 0)]


def weighted_ap(pos_counts: np.ndarray, neg_bins: np.ndarray) -> np.ndarray:
    """Average precision from level counts (rows: resamples); as scikit-learn computes it."""
    tp = np.cumsum(pos_counts, axis=-1)
    fp = np.cumsum(neg_bins[..., : pos_counts.shape[-1]], axis=-1)
    n_pos = tp[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        return np.sum(pos_counts * precision, axis=-1) / np.maximum(n_pos[..., 0], 1)


def candidate_bootstrap(y, scores, decisions, *, costs: DecisionCosts, samples: int,
                        confidence: float, seed: int = 0, chunk: int = 4_000_000) -> dict:
    """One-sided bootstrap bounds of the candidate's recall, PR AUC and normalised cost.

    Rows are resampled with replacement within each class, so every resample keeps the
    test part's positive and negative counts. Recall and cost depend only on how many of the
    resampled positives are caught and negatives flagged (two binomials); PR AUC on how many
    resampled positives fall at each distinct score and how many negatives between them (two
    multinomials over the counts of :func:`ap_levels`): exact for the row bootstrap, and the
    cost grows with the positives, not the rows.

    With per-row ``costs`` the cost and recall bounds resample the positives row by row (each
    missed positive at its own cost; recall is the share of the positives' cost caught, in
    the money the model was chosen in); PR AUC is unchanged.

    Returns:
        Point estimates with ``recall_lower``, ``pr_auc_lower`` (at ``1 - confidence``) and
        ``cost_upper`` (at ``confidence``).
    """
    y = np.asarray(y).astype(bool)
    d = np.asarray(decisions).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    rng = np.random.default_rng(seed)
    tp = rng.binomial(n_pos, (y & d).sum() / max(n_pos, 1), size=samples)
    fp = rng.binomial(n_neg, (~y & d).sum() / max(n_neg, 1), size=samples)
    fn_cost, fp_cost = costs.fn_cost, costs.false_alarm_cost
    m = costs.miss_costs(y)[y]
    hit = d[y].astype(float)
    recall = tp / max(n_pos, 1)
    if not costs.per_row:
        cost = normalised(fn_cost * (n_pos - tp) + fp_cost * fp, fn_cost * n_pos)
    else:  # recall in money too: the share of the positives' cost the flags catch
        missed, never = positive_sums(rng, samples, [m * (1 - hit), m])
        cost = normalised(missed + fp_cost * fp, never)
        recall = 1 - normalised(missed, never)
    pos, neg = ap_levels(y, scores)
    nw = costs.negative_weight  # a sampled negative stands for this many (PR AUC in population)
    step = max(1, chunk // max(len(neg), 1))
    ap = np.concatenate([
        weighted_ap(rng.multinomial(n_pos, pos / max(n_pos, 1), size=size),
                    rng.multinomial(n_neg, neg / max(n_neg, 1), size=size) * nw)
        for size in [min(step, samples - i) for i in range(0, samples, step)]])
    return {
        "samples": samples,
        "confidence": confidence,
        "recall": float((y & d).sum() / max(n_pos, 1) if not costs.per_row
                        else m @ hit / max(m.sum(), 1e-300)),
        "recall_lower": float(np.quantile(recall, 1 - confidence)),
        "pr_auc": float(weighted_ap(pos, neg * nw)),
        "pr_auc_lower": float(np.quantile(ap, 1 - confidence)),
        "normalised_cost": normalised(m @ (1 - hit) + fp_cost * (~y & d).sum(), m.sum()),
        "cost_upper": float(np.quantile(cost, confidence)),
    }


def fair_rows(test_rows, *, champion_train, candidate_train) -> tuple[np.ndarray, dict]:
    """Which candidate test rows neither model trained on, by content hash.

    Returns:
        (boolean mask over the test rows, overlap counts for the verdict)
    """
    test_rows = np.asarray(test_rows, dtype=np.uint64)
    champ = np.isin(test_rows, champion_train) if champion_train is not None else None
    own = (np.isin(test_rows, candidate_train) if candidate_train is not None
           else np.zeros(len(test_rows), dtype=bool))
    mask = ~own if champ is None else ~(own | champ)
    overlap = {"test_rows": int(len(test_rows)), "fair_rows": int(mask.sum()),
               "champion_trained_on": None if champ is None else int(champ.sum()),
               "candidate_trained_on": int(own.sum()),
               "champion_fingerprints": champion_train is not None}
    return mask, overlap


def champion_gates(gate, gates: Gates, candidate: Candidate, champion: Champion, *,
                   seed: int, fair: tuple | None = None) -> dict | None:
    """Add the champion comparison's gates through ``gate``; returns the bootstrap figures.

    ``fair`` is :func:`fair_rows`' (mask, overlap): the comparison uses only those rows. With
    a review capacity (``costs.max_alert_rate``) both models flag at most that share of them
    (:func:`alert_capped`).
    """
    if champion.version is None:
        gate(CHAMPION_COST_GATE, True, None, None, "no champion yet: nothing to compare")
        gate(CHAMPION_RECALL_GATE, True, None, None, "no champion yet: nothing to compare")
        return None
    if champion.error is not None:
        gate(CHAMPION_COST_GATE, False, None, None,
             f"champion {champion.version} cannot score these test rows ({champion.error}); "
             "compare by hand and promote with --force if intended")
        return None
    y, cand, champ = (np.asarray(a) for a in (candidate.y, candidate.decisions,
                                               champion.decisions))
    costs, cand_scores, champ_scores = candidate.costs, candidate.scores, champion.scores
    overlap = None
    if fair is not None:
        mask, overlap = fair
        y, cand, champ, costs = y[mask], cand[mask], champ[mask], costs.rows(mask)
        cand_scores, champ_scores = (None if s is None else np.asarray(s)[mask]
                                     for s in (cand_scores, champ_scores))
        positives = int(np.asarray(y).astype(bool).sum())
        overlap["fair_positives"] = positives
        left_out = (f"{overlap['champion_trained_on']} the champion trained on"
                    if overlap["champion_fingerprints"] else
                    "the champion keeps no training-row fingerprints: overlap unknown")
        enough = positives >= gates.min_test_positives
        gate(FAIR_ROWS_GATE, enough, positives, gates.min_test_positives,
             f"compared on {overlap['fair_rows']} of {overlap['test_rows']} test rows "
             f"({positives} positives) that neither model trained on; left out: {left_out}, "
             f"{overlap['candidate_trained_on']} duplicates of candidate training rows"
             + ("" if enough else "; too few positives left to compare fairly"))
        if not enough:
            return {"champion": champion.version, "overlap": overlap}
    max_alert_rate = costs.max_alert_rate
    cand, champ, cap = alert_capped(cand, champ, cand_scores=cand_scores,
                                    champ_scores=champ_scores, max_alert_rate=max_alert_rate,
                                    weights=costs.row_weights(y))
    comparison = paired_bootstrap(y, cand, champ, costs=costs, samples=gates.bootstrap_samples,
                                  confidence=gates.confidence, seed=seed)
    comparison.update(champion=champion.version, overlap=overlap, alert_cap=cap)
    capped = ("" if cap is None else f"; both at most {cap['alerts']} alerts (max_alert_rate "
              f"{max_alert_rate:g}; flagged before the cap: candidate {cap['candidate_flagged']}, "
              f"champion {cap['champion_flagged']})")
    gate(CHAMPION_COST_GATE, comparison["cost_diff_upper"] <= gates.cost_margin,
         comparison["cost_diff_upper"], gates.cost_margin,
         f"upper {gates.confidence:.0%} bound of (candidate - champion) normalised cost; "
         f"point estimate {comparison['cost_diff']:+.4f}{capped}", point=comparison["cost_diff"])
    gate(CHAMPION_RECALL_GATE, comparison["recall_drop_upper"] <= gates.recall_margin,
         comparison["recall_drop_upper"], gates.recall_margin,
         f"upper {gates.confidence:.0%} bound of (champion - candidate) recall; "
         f"point estimate {comparison['recall_drop']:+.4f}", point=comparison["recall_drop"])
    return comparison


def candidate_bounds(gates: Gates, candidate: Candidate, *, seed: int) -> dict | None:
    """The bootstrap bounds the absolute gates judge (None when they judge point estimates)."""
    if gates.absolute_gates != "bound":
        return None
    if candidate.y is None or candidate.scores is None or candidate.decisions is None:
        raise ValueError("gates.absolute_gates='bound' needs the candidate's labels, scores "
                         "and decisions (y, scores, decisions)")
    return candidate_bootstrap(candidate.y, candidate.scores, candidate.decisions,
                               costs=candidate.costs, samples=gates.bootstrap_samples,
                               confidence=gates.confidence, seed=seed)


def absolute_gates(gate, gates: Gates, candidate: Candidate, *, bounds: dict | None) -> None:
    """Minimum recall, PR AUC above prevalence, maximum normalised cost: on the one-sided
    bootstrap bounds when ``bounds`` is given, else on the point estimates.

    With per-row costs recall is in money, as the model was chosen. With a review capacity
    (``costs.max_alert_rate``) that cannot reach every positive, ``min_recall`` is a share of
    the best recall the capacity allows.
    """
    metrics, y, max_alert_rate = candidate.metrics, candidate.y, candidate.costs.max_alert_rate
    at = metrics["at_threshold"]
    reach = reachable_recall(metrics, candidate.costs, y=y)
    recall = candidate_recall(metrics, candidate.costs, y=y, decisions=candidate.decisions)
    pr_floor = max(gates.min_pr_auc, metrics["prevalence"])
    figures = (("min_recall", "recall", recall, "recall_lower", "lower"),
               ("min_pr_auc", "pr_auc", metrics["pr_auc"], "pr_auc_lower", "lower"),
               ("max_normalised_cost", "normalised_cost", at["normalised_cost"], "cost_upper",
                "upper"))
    limits = {"min_recall": gates.min_recall * (1.0 if reach is None else reach),
              "min_pr_auc": pr_floor, "max_normalised_cost": gates.max_normalised_cost}
    within = ("" if reach is None or reach >= 1 else
              f" (min_recall {gates.min_recall:g} x {reach:.4f}, the best recall within "
              f"max_alert_rate {max_alert_rate:g})")
    money = y is not None and candidate.costs.per_row
    unit = " in money (each positive weighs its cost)" if money else ""
    what = {"min_recall": f"minority-class recall{unit} at the chosen threshold{within}",
            "min_pr_auc": "PR AUC above the configured minimum and above prevalence "
                          "(a random ranking)",
            "max_normalised_cost": "test cost / cost of never flagging"}
    for name, _, point, bound_key, side in figures:
        judged = point if bounds is None else bounds[bound_key]
        limit = limits[name]
        passed = (judged <= limit if name == "max_normalised_cost" else
                  judged > limit if name == "min_pr_auc" else judged >= limit)
        how = ("point estimate" if bounds is None else
               f"{side} {gates.confidence:.0%} bound judged; point estimate {point:.4f}")
        gate(name, passed, judged, limit, f"{what[name]}; {how}", point=point)


def evaluate_gates(candidate: Candidate, gates: Gates, *, champion: Champion | None = None,
                   seed: int = 0) -> Verdict:
    """Judge a candidate: fixed minimums, then the champion comparison on fair rows.

    The champion comparison leaves out rows either model trained on (``candidate.test_rows``
    against ``candidate.train_rows`` and ``champion.train_rows``). With a review capacity
    (``candidate.costs.max_alert_rate``) ``min_recall`` is judged against the best recall it
    allows, and both models' decisions in the comparison are capped to it, each model's
    highest scores first.

    Returns:
        The verdict: ``passed``, ``rejected`` or ``refused`` (too few (fair) test positives
        to judge at all), its gates, the comparison and the bounds.
    """
    champion = champion or Champion()
    positives = candidate.metrics["positives"]
    rows: list[GateResult] = []

    def gate(name, passed, value, limit, detail, point=None):
        rows.append(GateResult(name, passed, value, limit, detail, point=point))

    enough = positives >= gates.min_test_positives
    gate("min_test_positives", enough, positives, gates.min_test_positives,
         "enough positives in the test part to judge" if enough else
         f"only {positives} test positives; need {gates.min_test_positives} to judge: "
         "add data or lower gates.min_test_positives")
    if not enough:
        return Verdict(REFUSED, rows)
    bounds = candidate_bounds(gates, candidate, seed=seed)
    absolute_gates(gate, gates, candidate, bounds=bounds)
    fair = None
    if candidate.test_rows is not None and champion.version is not None \
            and champion.error is None:
        fair = fair_rows(candidate.test_rows, champion_train=champion.train_rows,
                         candidate_train=candidate.train_rows)
    comparison = champion_gates(gate, gates, candidate, champion, seed=seed, fair=fair)
    failed = {g.gate for g in rows if not g.passed}
    if shadows_first(gates, champion, failed):
        gate(SHADOW_FIRST_GATE, False, None, None,
             f"gates.shadow_first: passed the absolute gates; it shadows {champion.version} "
             "and is promoted only on live matured rows (the champion comparison on test rows "
             "above is for information)")
        return Verdict(REFUSED, rows, comparison, bounds)
    status = (REFUSED if FAIR_ROWS_GATE in failed else
              REJECTED if failed else PASSED)
    return Verdict(status, rows, comparison, bounds)


CHAMPION_GATES = frozenset({FAIR_ROWS_GATE, CHAMPION_COST_GATE, CHAMPION_RECALL_GATE})


def shadows_first(gates: Gates, champion: Champion, failed: set[str]) -> bool:
    """Whether ``gates.shadow_first`` sends the candidate to shadow the champion: a champion
    that can score serves, and the candidate failed no gate but the champion comparison's."""
    return (gates.shadow_first and champion.version is not None and champion.error is None
            and not failed - CHAMPION_GATES)


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(candidate: Candidate, gates: Gates, *, champion: Champion,
              seed: int = 0) -> Verdict:
    """Judge the candidate against the gates and ``champion``; publish the verdict as a
    table artifact."""
    verdict = evaluate_gates(candidate, gates, champion=champion, seed=seed)
    create_table_artifact(
        key="gate-verdict",
        table=verdict_table(verdict).to_dict(orient="records"),
        description=f"Gate verdict: {verdict.status}",
    )
    return verdict
