"""Metric gates and the champion comparison (paired bootstrap on the same test rows)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import Gates

logger = logging.getLogger(__name__)


def paired_bootstrap(
    y,
    cand_decisions,
    champ_decisions,
    *,
    fn_cost: float,
    fp_cost: float,
    samples: int,
    confidence: float,
    seed: int = 0,
) -> dict:
    """Bootstrap the candidate-minus-champion differences in normalised cost and recall.

    Rows are resampled with replacement within each class (so every resample has the test
    part's positive count) and both models are judged on the same resampled rows. Only the
    2x2 agreement counts per class matter, so each resample is a multinomial draw over those
    four cells: exact for the row bootstrap and fast for any number of rows.

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
    # hits among positives, flags among negatives
    cand_tp, champ_tp = pos[:, 0] + pos[:, 1], pos[:, 0] + pos[:, 2]
    cand_fp, champ_fp = neg[:, 0] + neg[:, 1], neg[:, 0] + neg[:, 2]
    never = fn_cost * n_pos
    cand_cost = (fn_cost * (n_pos - cand_tp) + fp_cost * cand_fp) / never
    champ_cost = (fn_cost * (n_pos - champ_tp) + fp_cost * champ_fp) / never
    cost_diff = cand_cost - champ_cost
    recall_drop = (champ_tp - cand_tp) / n_pos
    point_cost = ((fn_cost * (n_pos - pos_cells[:2].sum()) + fp_cost * neg_cells[:2].sum())
                  - (fn_cost * (n_pos - pos_cells[[0, 2]].sum()) + fp_cost
                     * neg_cells[[0, 2]].sum())) / never
    point_recall_drop = (pos_cells[[0, 2]].sum() - pos_cells[:2].sum()) / n_pos
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


def champion_gates(gate, gates: Gates, *, y_test, cand_decisions, champ_decisions,
                   champion_version: str | None, champion_error: str | None, fn_cost: float,
                   fp_cost: float, seed: int) -> dict | None:
    """Add the champion comparison's gates through ``gate``; returns the bootstrap figures."""
    if champion_version is None:
        gate("champion_cost", True, None, None, "no champion yet: nothing to compare")
        gate("champion_recall", True, None, None, "no champion yet: nothing to compare")
        return None
    if champion_error is not None:
        gate("champion_cost", False, None, None,
             f"champion {champion_version} cannot score these test rows ({champion_error}); "
             "compare by hand and promote with --force if intended")
        return None
    comparison = paired_bootstrap(
        y_test, cand_decisions, champ_decisions, fn_cost=fn_cost, fp_cost=fp_cost,
        samples=gates.bootstrap_samples, confidence=gates.confidence, seed=seed)
    comparison["champion"] = champion_version
    gate("champion_cost", comparison["cost_diff_upper"] <= gates.cost_margin,
         comparison["cost_diff_upper"], gates.cost_margin,
         f"upper {gates.confidence:.0%} bound of (candidate - champion) normalised cost; "
         f"point estimate {comparison['cost_diff']:+.4f}")
    gate("champion_recall", comparison["recall_drop_upper"] <= gates.recall_margin,
         comparison["recall_drop_upper"], gates.recall_margin,
         f"upper {gates.confidence:.0%} bound of (champion - candidate) recall; "
         f"point estimate {comparison['recall_drop']:+.4f}")
    return comparison


def evaluate_gates(
    metrics: dict,
    gates: Gates,
    *,
    y_test=None,
    cand_decisions=None,
    champ_decisions=None,
    champion_version: str | None = None,
    champion_error: str | None = None,
    fn_cost: float,
    fp_cost: float,
    seed: int = 0,
) -> dict:
    """Judge a candidate: fixed minimums, then the champion comparison on the same rows.

    Returns:
        ``{"status": "passed" | "rejected" | "refused", "gates": [...], "comparison": ...}``;
        "refused" means too few test positives to judge at all.
    """
    at = metrics["at_threshold"]
    positives = metrics["positives"]
    rows = []

    def gate(name, passed, value, limit, detail):
        rows.append({"gate": name, "passed": bool(passed), "value": value, "limit": limit,
                     "detail": detail})

    enough = positives >= gates.min_test_positives
    gate("min_test_positives", enough, positives, gates.min_test_positives,
         "enough positives in the test part to judge" if enough else
         f"only {positives} test positives; need {gates.min_test_positives} to judge: "
         "add data or lower gates.min_test_positives")
    if not enough:
        return {"status": "refused", "gates": rows, "comparison": None}
    gate("min_recall", at["recall"] >= gates.min_recall, at["recall"], gates.min_recall,
         "minority-class recall at the chosen threshold")
    pr_floor = max(gates.min_pr_auc, metrics["prevalence"])
    gate("min_pr_auc", metrics["pr_auc"] > pr_floor, metrics["pr_auc"], pr_floor,
         "PR AUC above the configured minimum and above prevalence (a random ranking)")
    gate("max_normalised_cost", at["normalised_cost"] <= gates.max_normalised_cost,
         at["normalised_cost"], gates.max_normalised_cost,
         "test cost / cost of never flagging")
    comparison = champion_gates(gate, gates, y_test=y_test, cand_decisions=cand_decisions,
                                champ_decisions=champ_decisions,
                                champion_version=champion_version,
                                champion_error=champion_error, fn_cost=fn_cost,
                                fp_cost=fp_cost, seed=seed)
    status = "passed" if all(r["passed"] for r in rows) else "rejected"
    return {"status": status, "gates": rows, "comparison": comparison}


def verdict_table(verdict: dict) -> pd.DataFrame:
    table = pd.DataFrame(verdict["gates"])
    table.insert(0, "result", table["passed"].map({True: "✅ pass", False: "❌ FAIL"}))
    table["value"] = table["value"].map(lambda v: "" if v is None else f"{v:.4g}")
    table["limit"] = table["limit"].map(lambda v: "" if v is None else f"{v:.4g}")
    return table


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(metrics: dict, gates: Gates, *, champion, **kwargs) -> dict:
    """Judge the candidate against the gates and ``champion`` (a ``tasks.score.Champion``);
    publish the verdict as a table artifact."""
    verdict = evaluate_gates(metrics, gates, champ_decisions=champion.decisions,
                             champion_version=champion.version,
                             champion_error=champion.error, **kwargs)
    create_table_artifact(
        key="gate-verdict",
        table=verdict_table(verdict).to_dict(orient="records"),
        description=f"Gate verdict: {verdict['status']}",
    )
    return verdict
