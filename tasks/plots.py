"""Text 'plots' for Prefect artifacts and model cards: cost vs threshold, reliability."""

from __future__ import annotations

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from tasks.threshold import cost_curve


def cost_curve_markdown(y, scores, *, threshold: float, costs, points: int = 21) -> str:
    """Normalised cost at evenly spaced thresholds, with a bar per row and the chosen one."""
    grid, cost = cost_curve(y, scores, costs=costs, points=points)
    lines = ["| threshold | normalised cost | |", "|---:|---:|---|"]
    for t, c in zip(grid, cost, strict=True):
        bar = "█" * int(round(min(c, 2.0) * 20))
        lines.append(f"| {t:.2f} | {c:.3f} | {bar} |")
    lines.append("")
    lines.append(f"Chosen threshold: **{threshold:.4f}** (minimum cost on out-of-fold scores).")
    return "\n".join(lines)


def calibration_summary(y, scores, *, bins: int = 10) -> dict:
    """Brier score and a quantile-binned reliability curve (mean score vs observed rate)."""
    y = np.asarray(y).astype(int)
    scores = np.clip(np.asarray(scores, dtype=float), 0, 1)
    observed, predicted = calibration_curve(y, scores, n_bins=bins, strategy="quantile")
    prevalence = y.mean()
    return {
        "brier": float(brier_score_loss(y, scores)),
        "brier_of_prevalence": float(prevalence * (1 - prevalence)),
        "mean_score": float(scores.mean()),
        "prevalence": float(prevalence),
        "reliability": [{"mean_score": float(p), "observed_rate": float(o)}
                        for p, o in zip(predicted, observed, strict=True)],
    }


def calibration_markdown(summary: dict, *, title: str = "Reliability") -> str:
    """A reliability table (mean score vs observed rate per score bin) with the Brier score.

    Args:
        summary: The output of :func:`calibration_summary`.
    """
    lines = [
        f"## {title}",
        "",
        f"Brier score {summary['brier']:.5f} (always predicting the prevalence "
        f"{summary['prevalence']:.4f}: {summary['brier_of_prevalence']:.5f}); mean score "
        f"{summary['mean_score']:.4f}.",
        "",
        "| bin | mean score | observed rate | |",
        "|---:|---:|---:|---|",
    ]
    for i, point in enumerate(summary["reliability"], start=1):
        gap = point["mean_score"] - point["observed_rate"]
        mark = "over" if gap > 0.05 else "under" if gap < -0.05 else ""
        lines.append(f"| {i} | {point['mean_score']:.4f} | {point['observed_rate']:.4f} "
                     f"| {mark} |")
    lines += ["", "A calibrated score has mean score ≈ observed rate in every bin "
              "(bins hold equal numbers of rows)."]
    return "\n".join(lines)
