"""The shadow challenger judged on live rows: challenger and champion compared on the same
matured rows the champion decided and the challenger scored in shadow, by the training gate's
paired non-inferiority test (:func:`tasks.judge.gates.champion_gates`: the paired bootstrap
of the cost and recall differences, judged against ``cost_margin`` and ``recall_margin``).

Registry moves on the verdict (promote, wait for approval, retire) are
:func:`tasks.registry.challenger.settle`'s.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd

from schemas.config import Gates
from schemas.scored import (
    CHALLENGER_DECISION,
    CHALLENGER_SCORE,
    CHALLENGER_VERSION,
    DECISION,
    MODEL_VERSION,
    SCORE,
)
from tasks.decision.costs import DecisionCosts
from tasks.judge.gates import Candidate, Champion, champion_gates

logger = logging.getLogger(__name__)


def shadowed_rows(frame: pd.DataFrame, judged: np.ndarray, *, champion: str,
                  challenger: str) -> np.ndarray:
    """The matured rows the champion decided while the challenger scored them in shadow."""
    if CHALLENGER_VERSION not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return (np.asarray(judged) & (frame[MODEL_VERSION].astype(str) == champion).to_numpy()
            & (frame[CHALLENGER_VERSION].astype(str) == challenger).to_numpy())


def shadow_verdict(frame: pd.DataFrame, y: np.ndarray, judged: np.ndarray, *, champion: str,
                   challenger: str, gates: Gates, costs: dict, seed: int = 0,
                   max_alert_rate: float | None = None) -> dict:
    """``passed`` (non-inferior on cost and recall), ``rejected`` or ``refused`` (fewer matured
    positives than ``gates.min_test_positives`` yet: keep shadowing), with the gate rows and
    the bootstrap figures; ``evidence: shadow``."""
    rows = shadowed_rows(frame, judged, champion=champion, challenger=challenger)
    shadow = frame.loc[rows]
    yy = np.asarray(y)[rows].astype(int)
    gate_rows: list[dict] = []

    def gate(name, passed, value, limit, detail, point=None):
        gate_rows.append({"gate": name, "passed": bool(passed), "value": value,
                          "point": value if point is None else point, "limit": limit,
                          "detail": detail})

    positives = int(yy.sum())
    enough = positives >= gates.min_test_positives
    gate("shadow_matured_positives", enough, positives, gates.min_test_positives,
         f"{int(rows.sum())} matured rows ({positives} positives) decided by {champion} and "
         f"scored in shadow by {challenger}")
    comparison = None
    if enough:
        row_costs = replace(DecisionCosts.from_meta(costs), max_alert_rate=max_alert_rate)
        candidate = Candidate(metrics={}, costs=row_costs.for_rows(shadow), y=yy,
                              scores=shadow[CHALLENGER_SCORE].to_numpy(),
                              decisions=shadow[CHALLENGER_DECISION].to_numpy())
        served = Champion(version=champion, decisions=shadow[DECISION].to_numpy(),
                          scores=shadow[SCORE].to_numpy())
        comparison = champion_gates(gate, gates, candidate, served, seed=seed)
    failed = [g["gate"] for g in gate_rows if not g["passed"]]
    status = "refused" if not enough else "rejected" if failed else "passed"
    reason = (f"shadow comparison on {int(rows.sum())} matured rows ({positives} positives): "
              + ("too few positives yet, keep shadowing" if not enough else
                 f"failed {', '.join(failed)}" if failed else
                 "non-inferior to the champion on cost and recall"))
    logger.info("%s vs %s: %s", challenger, champion, reason)
    return {"status": status, "evidence": "shadow", "challenger": challenger,
            "champion": champion, "rows": int(rows.sum()), "positives": positives,
            "gates": gate_rows, "comparison": comparison, "reason": reason}
