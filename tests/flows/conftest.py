"""Fixtures of the flow tests: one small champion trained once per session, which each module
copies into a registry of its own (so a module that trains, promotes or forges there leaves
the others' untouched)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SMALL_NAME = "fraud"


@pytest.fixture(scope="session")
def small_champion(prefect_harness, tmp_path_factory, demo_small):
    """v0001 of ``fraud``, the champion, trained once on the 6,000-row demo table (gradient
    boosting, balanced class weights, calibrated): ``(root, train.csv, training summary)``,
    the summary with the run's ``flow_run_id`` (its artifacts)."""
    from flows.training import training_flow
    from schemas.config import StrategyConfig, TrainingConfig
    from schemas.demo import LABEL
    from tasks.runtime.run_outcome import run_summary

    root = tmp_path_factory.mktemp("small-champion")
    data = root / "train.csv"
    demo_small.to_csv(data, index=False)
    strategy = StrategyConfig(model="hgb", sampler="none", class_weight="balanced",
                              calibrate="always")
    state = training_flow(TrainingConfig(data=str(data), label=LABEL, positive="1",
                                         registry=str(root / "registry"), name=SMALL_NAME,
                                         strategy=strategy), return_state=True)
    result = run_summary(state)
    assert result["promoted"], result["verdict"]
    return root, data, {**result, "flow_run_id": str(state.state_details.flow_run_id)}


@pytest.fixture(scope="session")
def copy_small_champion(small_champion):
    """A function copying the session's small champion into a folder: ``(folder, train.csv,
    summary)``, the registry at ``folder/registry``."""
    root, data, result = small_champion

    def copy(folder: Path) -> tuple[Path, Path, dict]:
        shutil.copytree(root / "registry", folder / "registry")
        shutil.copy2(data, folder / "train.csv")
        return folder, folder / "train.csv", result

    return copy
