"""`rareflow train --sample` on a partitioned source: what the version records, that its scores
are in the population's units, and that the same as_of rebuilds the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from schemas.config import TrainingConfig
from schemas.errors import EXIT_OK
from tasks.data.window import read_training_window
from tasks.decision.calibration import population_scores
from tasks.registry.store import Registry

DAYS = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]


def cli(*args: str):
    from flows.cli import app

    return CliRunner().invoke(app, list(args))


def _source(root, rows_per_day=5000, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for day in DAYS:
        x = rng.normal(size=(rows_per_day, 2))
        y = (rng.random(rows_per_day) < 1 / (1 + np.exp(-(-4.5 + 1.8 * x[:, 0])))).astype(int)
        frame = pd.DataFrame({"x0": x[:, 0], "x1": x[:, 1], "y": y})
        (root / f"date={day}").mkdir(parents=True)
        frame.to_parquet(root / f"date={day}" / "part-0.parquet", index=False)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_train_on_a_negative_sample(prefect_harness, tmp_path):
    """Check that `rareflow train --sample auto --sample-rows 6000` keeps every positive and
    about 6000 rows, records the rate it chose (config and lineage) and says so in the model
    card, that the served scores average near the population's prevalence (not the sample's),
    and that reading the recorded config as of the recorded time gives the same rows."""
    root = tmp_path / "source"
    population = _source(root)
    registry = tmp_path / "registry"
    run = cli("train", "--data", str(root), "--label", "y", "--sample", "auto",
              "--sample-rows", "6000", "--registry", str(registry), "--name", "sampled",
              "--model", "logreg", "--sampler", "none", "--class-weight", "none",
              "--calibrate", "always", "--folds", "3", "--bootstrap-samples-gate", "200")
    assert run.exit_code == EXIT_OK, run.output
    reg = Registry(registry, "sampled")
    meta = reg.metadata("v0001")
    sample = meta["lineage"]["sample"]
    positives, rows = int(population["y"].sum()), len(population)
    assert sample["setting"] == "auto" and sample["rate"] == 6000 / rows
    assert meta["config"]["sample"] == sample["rate"]  # frozen, as as_of is
    assert sample["rows_before"] == {"positive": positives, "negative": rows - positives}
    assert sample["rows_after"]["positive"] == positives
    assert "Negative sample (`sample: auto`)" in (reg.version_dir("v0001") /
                                                   "model_card.md").read_text()
    model, _ = reg.load("v0001")
    X = population[["x0", "x1"]]
    scores = model.positive_proba(X)
    assert abs(scores.mean() - population["y"].mean()) < 0.3 * population["y"].mean()
    inner = model.estimator.estimator.estimator_
    assert np.allclose(scores, population_scores(inner.estimator_.predict_proba(X)[:, 1],
                                                 sample["rate"]))
    reference = reg.reference("v0001")  # what monitoring compares with: population units
    weights = dict(zip(reference["y"], reference["population_weight"], strict=True))
    assert weights == {"1": 1.0, "0": sample["negative_weight"]}  # labels as the schema has them
    again = read_training_window(TrainingConfig(**meta["config"]), needed=5)
    assert again.lineage["sample"]["rows_after"] == sample["rows_after"]
    assert len(again.frame) == sum(sample["rows_after"].values())


def test_monitoring_reads_a_sampled_reference_as_the_population(prefect_harness, tmp_path):
    """Check that `rareflow monitor` of a version trained on a negative sample, on a batch of
    the same population, finds x0 (the input that marks the positives, over-represented in the
    sampled reference) undrifted, and writes its classification report."""
    import json
    from pathlib import Path

    root = tmp_path / "source"
    population = _source(root)
    registry = tmp_path / "registry"
    run = cli("train", "--data", str(root), "--label", "y", "--sample", "0.1", "--registry",
              str(registry), "--name", "sampled", "--model", "logreg", "--sampler", "none",
              "--class-weight", "none", "--folds", "3", "--bootstrap-samples-gate", "200")
    assert run.exit_code == EXIT_OK, run.output
    batch = tmp_path / "batch.parquet"
    population.sample(8000, random_state=3).to_parquet(batch, index=False)
    run = cli("monitor", "--data", str(batch), "--registry", str(registry), "--name",
              "sampled", "--drift-sample-rows", "4000")
    assert run.exit_code == EXIT_OK, run.output
    summary = next(Path(registry).rglob("summary.json"))
    result = json.loads(summary.read_text())
    assert result["data_drift"]["drifted_columns"] == [], result["data_drift"]
    assert Path(result["reports"]["quality_html"]).is_file()
