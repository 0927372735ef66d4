"""Flow tests of monitoring: a small model trained once, then drifted, undrifted and immature
batches judged through the flow and through `rareflow monitor`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from schemas.errors import EXIT_CANNOT_JUDGE, EXIT_DRIFT, EXIT_OK

pytestmark = pytest.mark.slow

REPORT_FILES = ("quality.html", "quality.json", "data_drift.html", "data_drift.json",
                "summary.json")


@pytest.fixture(scope="module")
def trained(prefect_harness, tmp_path_factory):
    """A registry holding one promoted hgb model trained on 20,000 demo rows (trained once).

    Not the session's small champion: the recall test needs a reference with a few hundred
    positives. Tried: on the small champion's 34, the drifted batch's drop (0.618 to 0.424)
    has p = 0.056 and reads NO DRIFT."""
    from flows.training import training_flow
    from schemas.config import SplitConfig, StrategyConfig, TrainingConfig
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table

    base = tmp_path_factory.mktemp("monitoring")
    data = write_table(make_demo_data(20_000, seed=0), base / "train.parquet")
    config = TrainingConfig(
        data=str(data), label="is_fraud", positive="1", registry=str(base / "registry"),
        name="demo", split=SplitConfig(n_folds=3),
        strategy=StrategyConfig(model="hgb", sampler="none", class_weight="none"),
    )
    result = training_flow(config)
    assert result["promoted"], result["verdict"]
    return base


def _monitor_cli(base: Path, data: Path, *extra: str):
    from flows.cli import app

    args = ["monitor", "--data", str(data), "--registry", str(base / "registry"),
            "--name", "demo", *extra]
    return CliRunner().invoke(app, args)


def _line(output: str, prefix: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(prefix))


def test_drifted_batch_raises_recall_drift(trained):
    """Check that the demo's drifted batch exits 4, writes every report and emits the event."""
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table
    from tasks.registry.store import Registry

    data = write_table(make_demo_data(20_000, seed=5, drift=True), trained / "drifted.parquet")
    run = _monitor_cli(trained, data)
    assert run.exit_code == EXIT_DRIFT, run.output
    verdict = _line(run.output, "DRIFT demo v0001")
    assert "minority recall" in verdict and "expected cost" in verdict
    folder = Path(_line(run.output, "Reports: ").removeprefix("Reports: "))
    assert folder.parent == Registry(trained / "registry", "demo").version_dir("v0001") / "reports"
    for name in REPORT_FILES:
        assert (folder / name).stat().st_size > 0, name
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "drift"
    assert summary["decision"]["batch_recall"] < summary["decision"]["reference_recall"] - 0.05
    assert summary["decision"]["p_value"] < 0.05
    assert summary["event_id"] is not None
    assert summary["cost"]["batch"]["expected_cost"] > 0
    assert summary["data_drift"]["drifted_columns"]


def test_undrifted_scored_batch_is_no_drift(trained):
    """Check that an undrifted batch of the same size, scored beforehand, is judged no drift."""
    from flows.monitoring import monitoring_flow
    from schemas.config import MonitoringConfig
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table
    from tasks.registry.store import Registry
    from tasks.serving.batch_scoring import score_frame

    model, _ = Registry(trained / "registry", "demo").load("champion")
    scored = score_frame(model, make_demo_data(20_000, seed=6))
    data = write_table(scored, trained / "undrifted_scored.parquet")
    result = monitoring_flow(MonitoringConfig(data=str(data), registry=str(trained / "registry"),
                                              name="demo"))
    assert result["status"] == "no-drift", result["verdict"]
    assert result["decision"]["p_value"] >= 0.05
    assert result["event_id"] is None
    assert result["matured_rows"] == 20_000
    for key in ("quality_html", "quality_json", "data_drift_html", "data_drift_json", "summary"):
        assert Path(result["reports"][key]).is_file(), key


def test_too_few_matured_positives_cannot_judge(trained):
    """Check that a batch whose labels are mostly not yet known exits 5 instead of guessing."""
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table

    df = make_demo_data(3000, seed=7, drift=True)
    df = df.assign(label_known=np.arange(len(df)) < 600)  # ~9 matured positives
    data = write_table(df, trained / "immature.parquet")
    run = _monitor_cli(trained, data, "--label-available-column", "label_known")
    assert run.exit_code == EXIT_CANNOT_JUDGE, run.output
    verdict = _line(run.output, "CANNOT JUDGE demo v0001")
    assert "matured positives" in verdict and "at least 20" in verdict


def test_missing_label_column_is_bad_input(trained):
    """Check that a batch without labels fails as bad input, not as an internal error."""
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table

    data = write_table(make_demo_data(500, seed=8).drop(columns=["is_fraud"]),
                       trained / "unlabelled.parquet")
    run = _monitor_cli(trained, data)
    assert run.exit_code == 2, run.output
    assert "needs the label column 'is_fraud'" in run.output
    assert run.exit_code != EXIT_OK


def test_relative_registry_and_data_paths_work(trained, monkeypatch):
    """Check that monitoring with relative paths (as the demo uses) writes reports and links."""
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table

    write_table(make_demo_data(5_000, seed=8), trained / "relative.parquet")
    monkeypatch.chdir(trained)
    from flows.cli import app

    run = CliRunner().invoke(app, ["monitor", "--data", "relative.parquet", "--registry",
                                   "registry", "--name", "demo", "--min-positives", "5"])
    assert run.exit_code in (EXIT_OK, EXIT_DRIFT, EXIT_CANNOT_JUDGE), run.output
    assert "internal error" not in run.output
    folder = Path(_line(run.output, "Reports: ").removeprefix("Reports: "))
    assert (trained / folder / "quality.html").is_file() or (folder / "quality.html").is_file()
