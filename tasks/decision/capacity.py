"""Judging a candidate within its review capacity and in its own units: with an alert cap
(``costs.max_alert_rate``) no model can flag more than the cap allows, and with per-row costs
(``costs.fn_cost_column``) the model was chosen in money, so recall is judged in money too.
:mod:`tasks.judge.gates` uses these for ``min_recall`` and the champion comparison."""

from __future__ import annotations

import numpy as np

from tasks.decision.costs import DecisionCosts
from tasks.decision.threshold import alert_budget, capped_decisions


def alert_capped(cand, champ, *, cand_scores, champ_scores, max_alert_rate,
                 weights=None) -> tuple:
    """Both models' decisions within the same review capacity: at most ``max_alert_rate`` of
    the compared rows flagged, each model's highest scores first; and what the cap changed.
    With ``weights`` (a negative sample) rows count in the population's rows."""
    w = np.ones(len(cand)) if weights is None else np.asarray(weights, dtype=float)
    budget = alert_budget(float(w.sum()), max_alert_rate)
    if budget is None:
        return cand, champ, None
    cap = {"max_alert_rate": max_alert_rate, "alerts": budget,
           "candidate_flagged": round(float(w @ np.asarray(cand, dtype=float))),
           "champion_flagged": round(float(w @ np.asarray(champ, dtype=float)))}
    if cand_scores is not None:
        cand = capped_decisions(cand, cand_scores, budget, weights)
    if champ_scores is not None:
        champ = capped_decisions(champ, champ_scores, budget, weights)
    return cand, champ, cap


def reachable_recall(metrics: dict, costs: DecisionCosts, *, y=None) -> float | None:
    """The highest recall any model can reach on the judged rows when it flags at most
    ``costs.max_alert_rate`` of them (None: no cap); in money with ``y`` and per-row costs:
    the share of the positives' cost its dearest positives hold."""
    if costs.max_alert_rate is None:
        return None
    budget = alert_budget(costs.in_population(metrics["rows"], metrics["positives"]),
                          costs.max_alert_rate)
    miss_costs = None if y is None else costs.positive_miss_costs(y)
    if miss_costs is None:
        return min(1.0, budget / max(metrics["positives"], 1))
    m = np.sort(np.asarray(miss_costs, dtype=float)[np.asarray(y).astype(bool)])[::-1]
    return float(m[:budget].sum() / max(m.sum(), 1e-300))


def candidate_recall(metrics: dict, costs: DecisionCosts, *, y=None, decisions=None) -> float:
    """The candidate's recall at its threshold: in money (each positive weighted by what
    missing it costs) for per-row costs, the model having been chosen in money, else the
    share of positives flagged."""
    miss_costs = None if y is None else costs.positive_miss_costs(y)
    if miss_costs is None or decisions is None:
        return metrics["at_threshold"]["recall"]
    m = np.where(np.asarray(y).astype(bool), np.asarray(miss_costs, dtype=float), 0.0)
    return float(m @ np.asarray(decisions).astype(bool) / max(m.sum(), 1e-300))
