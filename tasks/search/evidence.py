"""The evidence a candidate is judged on: its held-out test part, or, when the data has too few
positives for a test part to judge (``split.evidence``), out-of-fold predictions of a nested
cross-validation over every row.

With nested evidence each outer fold plays the test part: the whole search (candidates, CV,
threshold, calibration) runs on the other outer folds and the resulting model, with its own
threshold, decides the held-out fold's rows. Every row is then judged by a model that never
saw it, and every positive counts. The served model is the search on all rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.model_selection import StratifiedKFold

from schemas.config import TrainingConfig
from tasks.data.split import Parts
from tasks.decision.costs import DecisionCosts
from tasks.judge.gates import Candidate
from tasks.judge.metrics import evaluate_decisions, evaluate_scores, metrics_markdown

logger = logging.getLogger(__name__)

TEST_PART, NESTED_CV = "test_part", "nested_cv"


@dataclass
class Evidence:
    """The rows a candidate is judged on, its scores and 0/1 decisions there, the metrics."""

    kind: str
    X: pd.DataFrame
    y: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray
    metrics: dict
    costs: DecisionCosts
    detail: dict = field(default_factory=dict)

    def candidate(self, parts: Parts) -> Candidate:
        """What the gates judge: these rows, with the training rows they must not repeat."""
        return Candidate(self.metrics, self.costs, y=self.y, scores=self.scores,
                         decisions=self.decisions, test_rows=parts.test_rows,
                         train_rows=parts.judged_rows_must_not_repeat)

    def describe(self) -> str:
        if self.kind == NESTED_CV:
            return (f"out-of-fold decisions of a {self.detail['outer_folds']}-fold nested "
                    f"cross-validation over all {len(self.y)} rows ({int(self.y.sum())} "
                    "positives); each outer fold decided by a search run without it")
        return f"the held-out test part ({len(self.y)} rows, {int(self.y.sum())} positives)"


def evidence_kind(config: TrainingConfig, positives: int) -> str:
    """``test_part``, or ``nested_cv`` when asked or (``auto``) when the table holds fewer
    positives than ``split.nested_cv_below_positives``."""
    mode = config.split.evidence
    if mode == "auto":
        return NESTED_CV if positives < config.split.nested_cv_below_positives else TEST_PART
    return mode


def test_part_evidence(model, parts: Parts, *, config: TrainingConfig) -> Evidence:
    """The final model's scores and decisions on the held-out test part."""
    costs = DecisionCosts.for_training(config).for_rows(parts.X_test)
    scores = model.positive_proba(parts.X_test)
    metrics = evaluate_scores(parts.y_test, scores, threshold=model.threshold, costs=costs)
    return Evidence(TEST_PART, parts.X_test, parts.y_test, scores,
                    model.decide(parts.X_test, scores), metrics, costs)


def nested_cv_evidence(parts: Parts, *, config: TrainingConfig) -> Evidence:
    """Out-of-fold scores and decisions of the whole search, refitted per outer fold."""
    from tasks.search.final_fit import fit_final
    from tasks.search.selection import search

    X, y = parts.X_train, parts.y_train
    outer = StratifiedKFold(config.split.n_folds, shuffle=True, random_state=config.seed + 1)
    scores, decisions = np.zeros(len(y)), np.zeros(len(y), dtype=np.int8)
    folds = []
    for k, (train_pos, held_pos) in enumerate(outer.split(np.zeros(len(y)), y)):
        X_in, y_in, X_out = X.iloc[train_pos], y[train_pos], X.iloc[held_pos]
        best, _, _ = search(X_in, y_in, parts.schema, config=config)
        model = fit_final(best.spec, X_in, y_in, parts.schema, threshold=best.threshold,
                          seed=config.seed, fold_models=best.fold_models,
                          costs=DecisionCosts.for_training(config)).model  # a sample's units
        scores[held_pos] = model.positive_proba(X_out)
        decisions[held_pos] = model.decide(X_out, scores[held_pos])
        folds.append({"fold": k, "strategy": best.spec.name, "threshold": best.threshold,
                      "rows": len(held_pos), "positives": int(y[held_pos].sum())})
        logger.info("Nested CV outer fold %d: %s, threshold %.4f", k, best.spec.name,
                    best.threshold)
    costs = DecisionCosts.for_training(config).for_rows(X)
    metrics = evaluate_decisions(y, scores, decisions, costs=costs)
    return Evidence(NESTED_CV, X, y, scores, decisions, metrics, costs,
                    {"outer_folds": len(folds), "folds": folds})


@task(name="evidence", cache_policy=NO_CACHE)
def evidence_task(model, parts: Parts, *, config: TrainingConfig, kind: str) -> Evidence:
    """Judge the final model's strategy on its evidence; publish the metrics artifact."""
    if kind == NESTED_CV:
        evidence = nested_cv_evidence(parts, config=config)
    else:
        evidence = test_part_evidence(model, parts, config=config)
    title = ("Nested-CV evidence: out-of-fold metrics" if kind == NESTED_CV
             else "Test-set metrics")
    create_markdown_artifact(key="test-metrics",
                             markdown=metrics_markdown(evidence.metrics, title=title),
                             description=f"Evidence: {evidence.describe()}")
    return evidence
