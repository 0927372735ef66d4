"""What a training run leaves for people and for Python: the served classifier, the plots, the
model card, the run's named state; and the same decisions through every way of scoring."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_errors import CliState
from flows.training import training_flow
from schemas.config import Gates, StrategyConfig, TrainingConfig
from schemas.demo import LABEL
from tasks.decision.served_classifier import RareflowClassifier
from tasks.registry.store import Registry
from tasks.runtime.run_outcome import run_summary
from tasks.serving.registered_model import load_model

pytestmark = pytest.mark.slow

FAST = StrategyConfig(model="hgb", sampler="none", class_weight="balanced", calibrate="always")
PLOTS = ["pr_curve.png", "cost_curve.png", "reliability.png", "score_histograms.png"]


def config(data, registry, **kw):
    return TrainingConfig(data=str(data), label=LABEL, positive="1", registry=str(registry),
                          name="fraud", strategy=FAST, **kw)


@pytest.fixture(scope="module")
def trained(copy_small_champion, tmp_path_factory):
    """The session's small champion (v0001 of `fraud`), copied for this module."""
    return copy_small_champion(tmp_path_factory.mktemp("served"))


def test_version_holds_its_plots_and_a_full_model_card(trained):
    """Check that the version folder has the four PNGs (checksummed in metadata) and a model
    card with every section the issue asks for, linking the plots."""
    root, _, result = trained
    reg = Registry(root / "registry", "fraud")
    vdir, meta = reg.version_dir(result["version"]), reg.metadata(result["version"])
    assert meta["plots"] == PLOTS
    for name in PLOTS:
        assert (vdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in meta["files"]
    assert meta["classes"] == [0, 1] and meta["model_format"] == 2
    assert meta["rareflow_version"] == "0.4.0"
    card = (vdir / "model_card.md").read_text()
    for section in ("## Intended use and limits", "## Training data", "Training prevalence",
                    "### Features", "## Leaderboard", "## Calibration", "## Gates",
                    "## Plots", "Split fingerprints", "Library versions", "matplotlib",
                    "load_model"):
        assert section in card, section
    for name in PLOTS:
        assert f"]({name})" in card
    assert meta["fingerprints"]["train"] in card
    assert "| amount | numeric | float64 |" in card


def run_artifacts(trained, key: str) -> list:
    """The artifacts ``key`` of the training run that made the champion (not another
    module's run in this session)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[trained[2]["flow_run_id"]])))


def test_plots_artifact_embeds_the_images(trained):
    """Check that the run published the plots as a markdown artifact of data-URI images."""
    found = run_artifacts(trained, "model-plots")
    assert len(found) == 1
    assert found[0].data.count("](data:image/png;base64,") == 4


def test_search_progress_artifact_reaches_100(trained):
    """Check that the strategy search published a progress artifact, updated to 100 %."""
    found = run_artifacts(trained, "strategy-search-progress")
    assert len(found) == 1 and found[0].type == "progress"
    assert float(found[0].data) == 100.0


def test_same_decisions_through_predict_score_command_and_decide(trained, tmp_path,
                                                                  demo_small):
    """Check that the same rows get the same decisions from model.predict, `rareflow score`
    and model.decide (none of them at 0.5)."""
    root, _, _ = trained
    batch = demo_small.sample(2000, random_state=3).drop(columns=LABEL)
    src, out = tmp_path / "batch.parquet", tmp_path / "scored.parquet"
    batch.to_parquet(src, index=False)
    done = CliRunner().invoke(app, ["score", "--data", str(src), "--out", str(out),
                                    "--registry", str(root / "registry"), "--name", "fraud"],
                              obj=CliState())
    assert done.exit_code == 0, done.output
    scored = pd.read_parquet(out)
    model = load_model(root / "registry", "fraud")
    assert isinstance(model, RareflowClassifier)
    predicted = model.predict(batch)
    np.testing.assert_array_equal(scored["decision"].to_numpy(), model.decide(batch))
    np.testing.assert_array_equal(predicted == 1, scored["decision"].to_numpy() == 1)
    np.testing.assert_allclose(scored["score"].to_numpy(), model.positive_proba(batch))
    assert (model.positive_proba(batch) >= 0.5).sum() != (predicted == 1).sum()


def test_rejected_run_ends_in_a_named_state(trained):
    """Check that a run whose candidate fails a gate ends in a Failed state named Rejected
    (red in the UI; `prefect deployment run --watch` exits non-zero), with the failed gate in
    its message, and its summary still readable from the state."""
    root, data, _ = trained
    state = training_flow(config(data, root / "registry", gates=Gates(min_recall=1.0), seed=2),
                          return_state=True)
    assert state.is_failed() and state.name == "Rejected"
    assert "min_recall" in state.message
    assert run_summary(state)["status"] == "rejected"


def test_a_plot_failure_never_fails_the_run(prefect_harness, tmp_path, demo_small,
                                            monkeypatch, caplog):
    """Check that when no plot can be drawn (e.g. matplotlib broken), training completes and
    logs one warning, and the card says there are no plots."""
    import tasks.judge.plots as plots

    def broken(*args, **kwargs):
        raise RuntimeError("cannot open display")

    monkeypatch.setattr(plots, "new_figure", broken)
    data = tmp_path / "train.csv"
    demo_small.to_csv(data, index=False)
    with caplog.at_level(logging.WARNING, logger="tasks.judge.plots"):
        result = training_flow(config(data, tmp_path / "registry"))
    assert result["status"] == "passed"
    warnings = [r for r in caplog.records if r.name == "tasks.judge.plots"]
    assert len(warnings) == 1 and "cannot open display" in warnings[0].getMessage()
    meta = json.loads((Registry(tmp_path / "registry", "fraud").version_dir("v0001")
                       / "metadata.json").read_text())
    assert meta["plots"] == []
