"""Plots as PNG images (tasks/judge/plots.py): what they are drawn from, that they are real PNGs,
the markdown the Prefect UI shows, and that a failure is one warning, never an error."""

from __future__ import annotations

import base64
import json
import logging

import numpy as np
import pytest

from tasks.decision.costs import DecisionCosts
from tasks.judge import plots

PNG = b"\x89PNG\r\n\x1a\n"

COSTS = DecisionCosts(fn_cost=10, fp_cost=1)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.05).astype(int)
    scores = np.clip(0.04 + 0.5 * y * rng.random(2000) + 0.1 * rng.random(2000), 0, 1)
    return y, scores


def test_cost_at_matches_counting(scored):
    """Check that the sorted cost curve equals counting FN and FP at each threshold."""
    y, scores = scored
    grid = [0.0, 0.05, 0.1, float(scores[7]), 0.3, 0.5, 1.0]
    got = plots.cost_at(y, scores, grid, costs=COSTS)
    want = [COSTS.expected(y, scores >= t) / (10 * y.sum())
            for t in grid]
    np.testing.assert_allclose(got, want)


def test_version_plots_are_four_pngs(scored):
    """Check that a version gets its four plots as PNG images."""
    y, scores = scored
    out = plots.version_plots(y, scores, threshold=0.2, costs=COSTS,
                              oof=(y, scores, COSTS))
    assert list(out) == [plots.PR_CURVE, plots.COST_CURVE, plots.RELIABILITY,
                         plots.HISTOGRAMS]
    assert all(png.startswith(PNG) and len(png) > 5000 for png in out.values())


def test_failures_are_one_warning(scored, monkeypatch, caplog):
    """Check that plots that cannot be drawn give one warning and the others still come."""
    y, scores = scored

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "reliability_png", broken)
    monkeypatch.setattr(plots, "pr_curve_png", broken)
    with caplog.at_level(logging.WARNING, logger="tasks.judge.plots"):
        out = plots.version_plots(y, scores, threshold=0.2, costs=COSTS)
    assert set(out) == {plots.COST_CURVE, plots.HISTOGRAMS}
    assert len(caplog.records) == 1 and "no display" in caplog.records[0].getMessage()


def test_image_markdown_embeds_data_uris(scored):
    """Check that the markdown holds each PNG as a data URI that decodes back to it."""
    y, scores = scored
    png = plots.histograms_png(y, scores, threshold=0.2)
    text = plots.image_markdown({plots.HISTOGRAMS: png}, title="t")
    encoded = text.split("(data:image/png;base64,")[1].split(")")[0]
    assert base64.b64decode(encoded) == png
    assert "No plot" in plots.image_markdown({}, title="t")


def test_cost_curve_markdown_has_image_and_table(scored):
    """Check that the cost-vs-threshold artifact is an image plus a short table, no text bars."""
    y, scores = scored
    text = plots.cost_curve_markdown(y, scores, threshold=0.2, costs=COSTS)
    assert "](data:image/png;base64," in text and "█" not in text
    assert "| **0.2** |" in text


def test_monitoring_history_and_plots(tmp_path):
    """Check that the model's monitoring summaries (all versions) are read oldest first and
    drawn, with the reference vs batch figure."""
    for version, stamp, recall, status in (("v0001", "20260101T000000Z", 0.7, "no-drift"),
                                           ("v0001", "20260108T000000Z", 0.4, "drift"),
                                           ("v0002", "20260115T000000Z", 0.72, "no-drift")):
        folder = tmp_path / "versions" / version / "reports" / f"monitor-{stamp}-abc123"
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({
            "version": version, "status": status, "batch": {"recall": recall},
            "reference": {"recall": 0.7}}))
    (tmp_path / "versions" / "v0002" / "reports" / "monitor-bad").mkdir()
    (tmp_path / "versions" / "v0002" / "reports" / "monitor-bad" / "summary.json").write_text("{")
    history = plots.monitoring_history(tmp_path)
    assert [h["batch_recall"] for h in history] == [0.7, 0.4, 0.72]
    result = {"threshold": 0.2, "reference": {"recall": 0.7, "precision": 0.3, "flag_rate": 0.1,
                                              "prevalence": 0.02},
              "batch": {"recall": 0.4, "precision": None, "flag_rate": 0.2, "prevalence": 0.03}}
    out = plots.monitoring_plots(result, history, ref_scores=np.linspace(0, 1, 50),
                                 batch_scores=np.linspace(0, 0.5, 50))
    assert list(out) == [plots.RECALL_OVER_TIME, plots.REFERENCE_VS_BATCH]
    assert all(png.startswith(PNG) for png in out.values())
