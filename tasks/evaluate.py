"""Imbalance-aware metrics on the test part: never plain accuracy alone."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
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

from tasks.threshold import expected_cost

HEADLINE = ["recall", "precision", "f1", "pr_auc", "roc_auc", "balanced_accuracy", "g_mean",
            "expected_cost", "normalised_cost"]


def metrics_at(y, scores, threshold: float, *, fn_cost: float, fp_cost: float) -> dict:
    """Threshold-dependent metrics of ``score >= threshold``."""
    y = np.asarray(y).astype(int)
    d = (np.asarray(scores) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, d, labels=[0, 1]).ravel()
    recall = recall_score(y, d, zero_division=0)
    specificity = tn / (tn + fp) if tn + fp else 0.0
    cost = expected_cost(y, d, fn_cost=fn_cost, fp_cost=fp_cost)
    never = fn_cost * y.sum()
    return {
        "threshold": float(threshold),
        "recall": float(recall),
        "precision": float(precision_score(y, d, zero_division=0)),
        "f1": float(f1_score(y, d, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y, d)),
        "g_mean": float(math.sqrt(recall * specificity)),
        "specificity": float(specificity),
        "expected_cost": cost,
        "cost_per_row": cost / len(y),
        "normalised_cost": cost / never if never else float("nan"),
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "classification_report": classification_report(
            y, d, labels=[0, 1], target_names=["negative", "positive"], zero_division=0,
            output_dict=True,
        ),
    }


def evaluate_scores(y, scores, *, threshold: float, fn_cost: float, fp_cost: float) -> dict:
    """Ranking metrics plus the threshold metrics at the chosen threshold and at 0.5."""
    y = np.asarray(y).astype(int)
    two_classes = 0 < y.sum() < len(y)
    return {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "prevalence": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, scores)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, scores)) if two_classes else float("nan"),
        "at_threshold": metrics_at(y, scores, threshold, fn_cost=fn_cost, fp_cost=fp_cost),
        "at_0_5": metrics_at(y, scores, 0.5, fn_cost=fn_cost, fp_cost=fp_cost),
    }


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


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model, X_test: pd.DataFrame, y_test, *, fn_cost: float, fp_cost: float):
    """Score the test part with the final model, evaluate, publish the metrics artifact."""
    scores = model.positive_proba(X_test)
    metrics = evaluate_scores(y_test, scores, threshold=model.threshold, fn_cost=fn_cost,
                              fp_cost=fp_cost)
    create_markdown_artifact(key="test-metrics", markdown=metrics_markdown(metrics),
                             description="Test-set metrics at the chosen threshold and at 0.5")
    return metrics, scores
