"""Plots as PNG images (matplotlib, no display needed) and as markdown the Prefect UI shows.

Per version: the precision-recall curve with the chosen operating point and the 0.5 point,
expected cost vs threshold with the chosen threshold, a reliability curve and the score
histograms per class (:func:`version_plots`). Per monitoring run: minority recall over time
from the model's monitoring history, and the reference vs the batch (:func:`monitoring_plots`).

Prefect artifacts have no image type, but the UI's markdown renderer shows an image given as a
``data:image/png;base64,...`` URI (``tests/e2e/test_ui_browser.py`` checks it in chromium), so
:func:`image_markdown` embeds each PNG in the artifact itself: nothing to serve, nothing to
reach. A plot that cannot be drawn never fails a run: :func:`render_all` logs one warning and
returns the others.

matplotlib is imported inside the drawing functions only: commands that draw nothing do not
pay for it.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, precision_recall_curve

from schemas.scored import SCORE
from tasks.decision.costs import DecisionCosts, normalised
from tasks.decision.served_classifier import decide
from tasks.runtime.durable_files import write_bytes_atomic

logger = logging.getLogger(__name__)

DPI = 90
SIZE = (6.4, 4.0)
CHOSEN, HALF, TEST, OOF = "#d62728", "#7f7f7f", "#1f77b4", "#ff7f0e"
PR_CURVE, COST_CURVE = "pr_curve.png", "cost_curve.png"
RELIABILITY, HISTOGRAMS = "reliability.png", "score_histograms.png"
RECALL_OVER_TIME, REFERENCE_VS_BATCH = "recall_over_time.png", "reference_vs_batch.png"
CAPTIONS = {
    PR_CURVE: "Precision-recall curve (test part): the chosen operating point and 0.5",
    COST_CURVE: "Expected cost vs threshold (normalised: 1 = never flagging)",
    RELIABILITY: "Reliability: observed positive rate vs mean score per bin (test part)",
    HISTOGRAMS: "Score histograms per class (test part)",
    RECALL_OVER_TIME: "Minority recall over time (matured rows of each monitoring run)",
    REFERENCE_VS_BATCH: "Reference (test part at training) vs this batch",
}


# -- drawing --------------------------------------------------------------------------------
def new_figure(ncols: int = 1, size=SIZE):
    """A matplotlib Figure on the Agg canvas: no pyplot, no display, no global state."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, ncols)


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def cost_at(y, scores, thresholds, *, costs: DecisionCosts) -> np.ndarray:
    """Normalised expected cost of ``score >= t`` for each threshold (one sort, no matrix);
    per-row miss costs count each missed positive at its own cost."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(scores, kind="stable")
    s, pos = np.asarray(scores, float)[order], y[order]
    miss = costs.miss_costs(y)[order]
    pos_below = np.concatenate([[0], np.cumsum(pos)])  # positives among the i lowest scores
    miss_below = np.concatenate([[0.0], np.cumsum(miss)])  # what missing them costs
    below = np.searchsorted(s, np.asarray(thresholds, float), side="left")
    fp = (len(s) - below) - (pos.sum() - pos_below[below])
    return normalised(miss_below[below] + costs.false_alarm_cost * fp, miss.sum())


def threshold_grid(*score_sets) -> np.ndarray:
    """Even thresholds in [0, 1] plus the scores' quantiles (where the cost changes most)."""
    qs = [np.quantile(s, np.linspace(0, 1, 201)) for s in score_sets if len(s)]
    return np.unique(np.clip(np.concatenate([np.linspace(0, 1, 201), *qs]), 0, 1))


def pr_curve_png(y, scores, *, threshold: float, weights=None) -> bytes:
    """``weights``: how many rows each row stands for (a negative sample's 1 / rate)."""
    y, scores = np.asarray(y).astype(int), np.asarray(scores, float)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    precision, recall, _ = precision_recall_curve(y, scores, sample_weight=weights)
    fig, ax = new_figure()
    ax.plot(recall, precision, color=TEST, lw=1.5, label="test part")
    prevalence = float(np.average(y, weights=w))
    ax.axhline(prevalence, color=HALF, ls=":", lw=1, label=f"prevalence {prevalence:.3f}")
    for t, color, name in ((threshold, CHOSEN, "chosen"), (0.5, HALF, "0.5")):
        flag = decide(scores, t)
        r = (flag & (y == 1)).sum() / max(y.sum(), 1)
        p = w[flag & (y == 1)].sum() / w[flag].sum() if flag.sum() else 1.0
        ax.plot([r], [p], "o", color=color, ms=8,
                label=f"{name} threshold {t:.3g}: recall {r:.2f}, precision {p:.2f}")
    ax.set(xlabel="recall (minority class)", ylabel="precision", xlim=(0, 1.01),
           ylim=(0, 1.02), title="Precision-recall curve")
    ax.legend(loc="upper right", fontsize=8)
    return png_bytes(fig)


def cost_curve_png(y, scores, *, threshold: float, costs: DecisionCosts,
                   oof: tuple | None = None) -> bytes:
    """Normalised cost vs threshold on the judged rows and (``oof``: (y, scores, costs)) on
    the out-of-fold training scores that chose the threshold."""
    grid = threshold_grid(scores, *([oof[1]] if oof else []))
    fig, ax = new_figure()
    if oof is not None:
        ax.plot(grid, cost_at(oof[0], oof[1], grid, costs=oof[2]),
                color=OOF, lw=1.5, label="out-of-fold training scores (chose the threshold)")
    test_cost = cost_at(y, scores, grid, costs=costs)
    ax.plot(grid, test_cost, color=TEST, lw=1.5, label="test part")
    at = float(cost_at(y, scores, [threshold], costs=costs)[0])
    half = float(cost_at(y, scores, [0.5], costs=costs)[0])
    ax.axvline(threshold, color=CHOSEN, lw=1.2, label=f"chosen {threshold:.4g} (test {at:.3f})")
    ax.axvline(0.5, color=HALF, ls="--", lw=1, label=f"0.5 (test {half:.3f})")
    ax.axhline(1.0, color=HALF, ls=":", lw=1)
    ax.set(xlabel="threshold", ylabel="expected cost / cost of never flagging",
           title=f"Expected cost vs threshold ({costs.describe()})",
           ylim=(0, max(1.2, min(3.0, float(np.nanmax(test_cost)) * 1.05))))
    ax.legend(loc="upper right", fontsize=8)
    return png_bytes(fig)


def reliability(y, scores, *, bins: int = 10, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(observed positive rate, mean score) per equal-count score bin, as scikit-learn's
    ``calibration_curve(strategy="quantile")``; with ``weights`` (a negative sample's rows
    standing for 1 / rate rows each) both are weighted means."""
    if weights is None:
        return calibration_curve(y, scores, n_bins=bins, strategy="quantile")
    w = np.asarray(weights, dtype=float)
    edges = np.percentile(scores, np.linspace(0, 100, bins + 1))
    ids = np.searchsorted(edges[1:-1], scores)
    total = np.bincount(ids, weights=w, minlength=len(edges))
    used = total > 0
    return ((np.bincount(ids, weights=w * y, minlength=len(edges))[used] / total[used]),
            (np.bincount(ids, weights=w * scores, minlength=len(edges))[used] / total[used]))


def reliability_png(y, scores, *, bins: int = 10, weights=None) -> bytes:
    y, scores = np.asarray(y).astype(int), np.clip(np.asarray(scores, float), 0, 1)
    observed, predicted = reliability(y, scores, bins=bins, weights=weights)
    brier = brier_score_loss(y, scores, sample_weight=weights)
    fig, ax = new_figure()
    top = float(max(predicted.max(), observed.max(), 0.05)) * 1.1
    ax.plot([0, top], [0, top], color=HALF, ls=":", lw=1, label="perfectly calibrated")
    ax.plot(predicted, observed, "o-", color=TEST, label="test part (equal-count bins)")
    ax.set(xlabel="mean score in bin", ylabel="observed positive rate", xlim=(0, top),
           ylim=(0, top), title=f"Reliability (Brier {brier:.4f})")
    ax.legend(loc="upper left", fontsize=8)
    return png_bytes(fig)


def histograms_png(y, scores, *, threshold: float) -> bytes:
    y, scores = np.asarray(y).astype(int), np.asarray(scores, float)
    fig, ax = new_figure()
    edges = np.linspace(0, 1, 51)
    for cls, color, name in ((0, TEST, "negative"), (1, CHOSEN, "positive")):
        part = scores[y == cls]
        if len(part):
            ax.hist(part, bins=edges, density=True, alpha=0.5, color=color,
                    label=f"{name} ({len(part)} rows)")
    ax.axvline(threshold, color="black", lw=1.2, label=f"chosen threshold {threshold:.4g}")
    ax.axvline(0.5, color=HALF, ls="--", lw=1, label="0.5")
    ax.set_yscale("log")
    ax.set(xlabel="score (probability of the positive class)", ylabel="density (log)",
           title="Scores per class")
    ax.legend(loc="upper right", fontsize=8)
    return png_bytes(fig)


def render_all(makers: dict[str, Callable[[], bytes]], *, what: str,
               quiet: bool = False) -> dict[str, bytes]:
    """Draw every plot it can; a failure logs one warning (naming the plots) and no more.

    ``quiet``: log failures at INFO (a plot the version's plots will warn about anyway).
    """
    out, failed = {}, []
    for name, make in makers.items():
        try:
            out[name] = make()
        except Exception as exc:  # a plot must never fail the run
            failed.append(f"{name} ({type(exc).__name__}: {exc})")
    if failed:
        logger.log(logging.INFO if quiet else logging.WARNING,
                   "Could not draw %s plots, the run goes on without them: %s", what,
                   "; ".join(failed))
    return out


def version_plots(y, scores, *, threshold: float, costs: DecisionCosts,
                  oof: tuple | None = None) -> dict[str, bytes]:
    """A version's four plots (test part; ``oof`` adds the training curve) as PNG bytes;
    a negative sample's rows count as the rows they stand for (``costs.row_weights``)."""
    weights = costs.row_weights(y)
    return render_all({
        PR_CURVE: lambda: pr_curve_png(y, scores, threshold=threshold, weights=weights),
        COST_CURVE: lambda: cost_curve_png(y, scores, threshold=threshold, costs=costs,
                                           oof=oof),
        RELIABILITY: lambda: reliability_png(y, scores, weights=weights),
        HISTOGRAMS: lambda: histograms_png(y, scores, threshold=threshold),
    }, what="the version's")


# -- monitoring -------------------------------------------------------------------------------
RUN_STAMP = re.compile(r"monitor-(\d{8}T\d{6}Z)")


def monitoring_history(model_dir: Path) -> list[dict]:
    """Every monitoring summary of a model (all versions), oldest first, with its time."""
    rows = []
    for path in Path(model_dir).glob("versions/*/reports/monitor-*/summary.json"):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        stamp = RUN_STAMP.search(path.parent.name)
        when = (datetime.strptime(stamp.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                if stamp else datetime.fromtimestamp(path.stat().st_mtime, UTC))
        rows.append({"at": when, "version": summary.get("version"),
                     "status": summary.get("status"),
                     "batch_recall": (summary.get("batch") or {}).get("recall"),
                     "reference_recall": (summary.get("reference") or {}).get("recall")})
    return sorted(rows, key=lambda r: r["at"])


def time_axis(ax, times: list[datetime]) -> None:
    """Readable dates; a short history gets an hour either side instead of years."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    if times and max(times) - min(times) < timedelta(hours=2):
        ax.set_xlim(min(times) - timedelta(hours=1), max(times) + timedelta(hours=1))
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.tick_params(axis="x", labelsize=8)


def recall_over_time_png(history: list[dict]) -> bytes:
    fig, ax = new_figure()
    runs = [r for r in history if r["batch_recall"] is not None]
    for version in dict.fromkeys(r["version"] for r in runs):
        mine = [r for r in runs if r["version"] == version]
        times = [r["at"] for r in mine]
        ax.plot(times, [r["batch_recall"] for r in mine], "o-", label=f"{version} batches")
        ref = mine[-1]["reference_recall"]
        pad = timedelta(minutes=30) if times[0] == times[-1] else timedelta(0)
        if ref is not None:
            ax.hlines(ref, times[0] - pad, times[-1] + pad, colors=HALF, linestyles=":",
                      lw=1.5)
    drift = [r for r in runs if r["status"] == "drift"]
    if drift:
        ax.plot([r["at"] for r in drift], [r["batch_recall"] for r in drift], "x",
                color=CHOSEN, ms=10, mew=2, label="recall drift")
    ax.set(ylabel="minority recall", ylim=(0, 1.02),
           title="Minority recall per monitoring run (dotted: reference)")
    time_axis(ax, [r["at"] for r in runs])
    ax.legend(loc="lower left", fontsize=8)
    return png_bytes(fig)


def reference_vs_batch_png(result: dict, ref_scores, batch_scores) -> bytes:
    fig, (bars, dist) = new_figure(2, size=(9.6, 4.0))
    names = ["recall", "precision", "flag_rate", "prevalence"]
    ref = [result["reference"].get(n) or 0.0 for n in names]
    bat = [result["batch"].get(n) or 0.0 for n in names]
    x = np.arange(len(names))
    bars.bar(x - 0.2, ref, 0.4, color=HALF, label="reference")
    bars.bar(x + 0.2, bat, 0.4, color=TEST, label="batch (matured)")
    bars.set_xticks(x, [n.replace("_", " ") for n in names], fontsize=8)
    bars.set(ylim=(0, 1.05), title="Figures at the version's threshold")
    bars.legend(fontsize=8)
    edges = np.linspace(0, 1, 51)
    dist.hist(np.asarray(ref_scores, float), bins=edges, density=True, alpha=0.5, color=HALF,
              label="reference")
    dist.hist(np.asarray(batch_scores, float), bins=edges, density=True, alpha=0.5,
              color=TEST, label="batch")
    dist.axvline(result["threshold"], color="black", lw=1.2, label="threshold")
    dist.set_yscale("log")
    dist.set(xlabel="score", title="Score distributions")
    dist.legend(fontsize=8)
    return png_bytes(fig)


def monitoring_plots(result: dict, history: list[dict], *, ref_scores,
                     batch_scores) -> dict[str, bytes]:
    """A monitoring run's two plots as PNG bytes."""
    return render_all({
        RECALL_OVER_TIME: lambda: recall_over_time_png(history),
        REFERENCE_VS_BATCH: lambda: reference_vs_batch_png(result, ref_scores, batch_scores),
    }, what="the monitoring run's")


@task(name="monitoring-plots", cache_policy=NO_CACHE)
def monitoring_plots_task(model_dir: Path, result: dict, batch, reference) -> dict[str, str]:
    """Draw the run's plots into its report folder and show them as an artifact."""
    from tasks.runtime.events import artifact_key

    pngs = monitoring_plots(result, monitoring_history(model_dir),
                            ref_scores=reference[SCORE], batch_scores=batch[SCORE])
    paths = {}
    for name, png in pngs.items():
        path = Path(result["reports"]["folder"]) / name
        write_bytes_atomic(path, png)
        paths[name] = str(path)
    create_markdown_artifact(
        key=artifact_key("monitor-plots", result["name"]),
        markdown=image_markdown(pngs, title=f"Monitoring {result['name']} "
                                            f"{result['version']}: plots"),
        description="Minority recall over time; the reference vs this batch (PNG)")
    return paths


# -- markdown -------------------------------------------------------------------------------
def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_markdown(pngs: dict[str, bytes], *, title: str) -> str:
    """Markdown with each PNG embedded as a data URI (what the Prefect UI can display)."""
    lines = [f"# {title}", ""]
    for name, png in pngs.items():
        caption = CAPTIONS.get(name, name)
        lines += [f"**{caption}**", "", f"![{caption}]({data_uri(png)})", ""]
    if not pngs:
        lines.append("No plot could be drawn (see the run's log).")
    return "\n".join(lines)


def cost_curve_markdown(y, scores, *, threshold: float, costs: DecisionCosts,
                        points: int = 11) -> str:
    """The cost curve as an image, with the normalised cost at a few thresholds below it."""
    pngs = render_all({COST_CURVE: lambda: cost_curve_png(
        y, scores, threshold=threshold, costs=costs)},
        what="the cost curve's", quiet=True)
    grid = np.unique(np.r_[np.linspace(0, 1, points), threshold])
    cost = cost_at(y, scores, grid, costs=costs)
    lines = [f"![{CAPTIONS[COST_CURVE]}]({data_uri(pngs[COST_CURVE])})", ""] if pngs else []
    lines += ["| threshold | normalised cost |", "|---:|---:|"]
    lines += [f"| {'**' if t == threshold else ''}{t:.4g}{'**' if t == threshold else ''} "
              f"| {c:.3f} |" for t, c in zip(grid, cost, strict=True)]
    lines += ["", f"Chosen threshold: **{threshold:.4f}** (minimum cost on out-of-fold scores)."]
    return "\n".join(lines)


def calibration_summary(y, scores, *, bins: int = 10, weights=None) -> dict:
    """Brier score and a quantile-binned reliability curve (mean score vs observed rate);
    ``weights``: how many rows each row stands for (a negative sample's 1 / rate)."""
    y = np.asarray(y).astype(int)
    scores = np.clip(np.asarray(scores, dtype=float), 0, 1)
    observed, predicted = reliability(y, scores, bins=bins, weights=weights)
    prevalence = np.average(y, weights=weights)
    return {
        "brier": float(brier_score_loss(y, scores, sample_weight=weights)),
        "brier_of_prevalence": float(prevalence * (1 - prevalence)),
        "mean_score": float(np.average(scores, weights=weights)),
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
