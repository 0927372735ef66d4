"""Imbalance-aware metrics on the test part: never plain accuracy alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from tasks.decision.costs import DecisionCosts, normalised
from tasks.decision.served_classifier import decide

HEADLINE = ["recall", "precision", "f1", "pr_auc", "roc_auc", "balanced_accuracy", "g_mean",
            "expected_cost", "normalised_cost"]


def metrics_at(y, scores, threshold: float, *, costs: DecisionCosts) -> dict:
    """Threshold-dependent metrics of ``score >= threshold``; costs in the cost's unit (money
    when rows carry their own miss cost), normalised by the cost of flagging nothing."""
    d = decide(scores, threshold).astype(int)
    return {"threshold": float(threshold), **decision_metrics(y, d, costs=costs)}


def decision_metrics(y, decisions, *, costs: DecisionCosts) -> dict:
    """Metrics of 0/1 decisions: recall first, never plain accuracy alone."""
    y = np.asarray(y).astype(int)
    d = np.asarray(decisions).astype(int)
    w = costs.row_weights(y)  # a negative sample: counts in the population's rows
    tn, fp, fn, tp = (round(float(c)) for c in confusion_matrix(
        y, d, labels=[0, 1], sample_weight=w).ravel())
    recall = recall_score(y, d, zero_division=0)
    specificity = tn / (tn + fp) if tn + fp else 0.0
    cost = costs.expected(y, d)
    return {
        "recall": float(recall),
        "precision": float(precision_score(y, d, zero_division=0, sample_weight=w)),
        "f1": float(f1_score(y, d, zero_division=0, sample_weight=w)),
        "balanced_accuracy": float(balanced_accuracy_score(y, d)),
        "g_mean": float(math.sqrt(recall * specificity)),
        "specificity": float(specificity),
        "expected_cost": cost,
        "cost_per_row": cost / (len(y) if w is None else float(w.sum())),
        "normalised_cost": normalised(cost, costs.never_flag(y)),
        "alert_rate": float(np.average(d, weights=w)) if len(d) else float("nan"),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "classification_report": classification_report(
            y, d, labels=[0, 1], target_names=["negative", "positive"], zero_division=0,
            output_dict=True, sample_weight=w,
        ),
    }


def evaluate_scores(y, scores, *, threshold: float, costs: DecisionCosts) -> dict:
    """Ranking metrics plus the threshold metrics at the chosen threshold and at 0.5."""
    y = np.asarray(y).astype(int)
    two_classes = 0 < y.sum() < len(y)
    w = costs.row_weights(y)  # a negative sample: in the population's units
    return {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "prevalence": float(np.average(y, weights=w)) if len(y) else float("nan"),
        "roc_auc": float(roc_auc_score(y, scores)) if two_classes else float("nan"),
        "pr_auc": (float(average_precision_score(y, scores, sample_weight=w)) if two_classes
                   else float("nan")),
        "at_threshold": metrics_at(y, scores, threshold, costs=costs),
        "at_0_5": metrics_at(y, scores, 0.5, costs=costs),
    }


def evaluate_decisions(y, scores, decisions, *, costs: DecisionCosts) -> dict:
    """:func:`evaluate_scores` for decisions made at thresholds that differ between rows (the
    outer folds of a nested cross-validation): the chosen threshold shows as NaN."""
    y = np.asarray(y).astype(int)
    out = evaluate_scores(y, scores, threshold=0.5, costs=costs)
    out["at_threshold"] = {"threshold": float("nan"),
                           **decision_metrics(y, decisions, costs=costs)}
    return out


def metric_table(metrics: dict) -> pd.DataFrame:
    """The headline metrics side by side: chosen threshold vs 0.5."""
    rows = []
    for name in HEADLINE:
        if name in ("pr_auc", "roc_auc"):
            rows.append({"metric": name, "chosen": metrics[name], "at_0_5": metrics[name]})
        else:
            rows.append({"metric": name, "chosen": metrics["at_threshold"][name],
                         "at_0_5": metrics["at_0_5"][name]})
    rows.append({"metric": "threshold", "chosen": metrics["at_threshold"]["threshold"],
                 "at_0_5": 0.5})
    return pd.DataFrame(rows)


def metrics_markdown(metrics: dict, *, title: str = "Test-set metrics") -> str:
    """A markdown report: metric table and confusion matrices."""
    table = metric_table(metrics)
    lines = [f"# {title}", "",
             f"{metrics['rows']} test rows, {metrics['positives']} positives "
             f"({metrics['prevalence']:.2%}).", "",
             "| metric | chosen threshold | threshold 0.5 |", "|---|---:|---:|"]
    for row in table.itertuples():
        lines.append(f"| {row.metric} | {row.chosen:.4g} | {row.at_0_5:.4g} |")
    for key, label in (("at_threshold", "chosen threshold"), ("at_0_5", "threshold 0.5")):
        cm = metrics[key]["confusion_matrix"]
        lines += ["", f"Confusion matrix at {label} ({metrics[key]['threshold']:.4g}):", "",
                  "| | predicted 0 | predicted 1 |", "|---|---:|---:|",
                  f"| actual 0 | {cm['tn']} | {cm['fp']} |",
                  f"| actual 1 | {cm['fn']} | {cm['tp']} |"]
    return "\n".join(lines)
