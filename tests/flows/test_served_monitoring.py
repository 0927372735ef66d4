"""Judging what was served, through the real flows: a scored source in the scoring contract
(each partition decided by `Registry.load(v)[0].decide`, the challenger's columns from
`challenger_columns`), labels matured in the source, then `monitoring_flow` with `scored`:
(a) a champion change inside the window is reported per version, (b) a challenger that beats
the champion is promoted with evidence: shadow, (c) one that loses is retired with its
verdict; and a scored source of another model is refused (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from schemas.config import MonitoringConfig, TrainingConfig
from schemas.scored import (
    DECISION,
    MODEL_SIGNATURE,
    MODEL_VERSION,
    ROW_KEY,
    SCORE,
    SCORED_AT,
    STATE_FILE,
    THRESHOLD,
)
from tasks.data.row_keys import key_columns, row_keys
from tasks.registry.challenger import SHADOW, challenge, read_challenger
from tasks.registry.store import Registry
from tasks.runtime.durable_files import sha256_file
from tasks.runtime.run_outcome import run_summary
from tasks.serving.challenger_columns import challenger_columns

pytestmark = pytest.mark.slow

START = pd.Timestamp("2025-01-06", tz="UTC")
SOURCE = {"time_column": "event_time", "label_time_column": "label_time"}
TRAIN = {"strategy": {"model": "hgb", "sampler": "none", "class_weight": "balanced",
                      "calibrate": "never"},
         "split": {"n_folds": 3, "test_order": "random"}, "gates": {"bootstrap_samples": 500},
         "window": "42d"}
LABEL_COLUMNS = ("is_fraud", "label_time")


def week(n: float) -> str:
    return (START + pd.Timedelta(weeks=n)).isoformat()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prefect_harness):
    """A 14-week stream (drift at week 6) and a registry with v0001 (trained before the drift,
    champion) and v0002 (trained after it)."""
    from flows.training import training_flow
    from tasks.data.demo_tables import make_stream
    from tasks.data.ingest import check_batch, write_batch
    from tasks.data.scan import resolve_as_of

    base = tmp_path_factory.mktemp("served")
    stream = make_stream(14, rows_per_day=1000, drift_week=6, seed=1)
    weeks = (stream["event_time"] - START).dt.days // 7
    for w in range(14):
        write_batch(check_batch(stream[weeks == w], source=base / "source",
                                time_column="event_time", as_of=resolve_as_of(week(w + 1))),
                    source=base / "source")
    for as_of in (week(5), week(12)):
        config = TrainingConfig(data=str(base / "source"), label="is_fraud", positive="1",
                                registry=str(base / "registry"), name="loop", as_of=as_of,
                                **SOURCE, **TRAIN)
        run_summary(training_flow(config, return_state=True))
    registry = Registry(base / "registry", "loop")
    assert registry.version_ids() == ["v0001", "v0002"]
    return base


def registry_copy(base: Path, name: str, champion: str) -> Registry:
    """A copy of the trained registry whose champion is ``champion``."""
    shutil.copytree(base / "registry", base / name)
    registry = Registry(base / name, "loop")
    if registry.champion()["version"] != champion:
        registry.promote(champion, reason="the test's champion", forced=True)
    return registry


def score_source(base: Path, registry: Registry, out: str, decided_by) -> Path:
    """Score every partition in the scoring contract: ``decided_by(week)`` names the version
    that decided it (None: not scored); the challenger's columns through the scorer's hook."""
    scored, partitions = base / out, {}
    for path in sorted((base / "source").rglob("*.parquet")):
        frame = pd.read_parquet(path)
        version = decided_by(int((frame["event_time"].min() - START).days // 7))
        if version is None:
            continue
        model, meta = registry.load(version)
        scores = model.positive_proba(frame)
        rows = pd.DataFrame({
            ROW_KEY: row_keys(frame, key_columns(model.schema, "event_time")), SCORE: scores,
            DECISION: model.decide(frame, scores), MODEL_VERSION: version,
            THRESHOLD: model.threshold,
            MODEL_SIGNATURE: sha256_file(registry.version_dir(version) / "signature.json"),
            SCORED_AT: pd.Timestamp.now(tz="UTC"), "event_time": frame["event_time"],
            **challenger_columns(registry, frame)})
        relative = path.relative_to(base / "source")
        (scored / relative).parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(scored / relative)
        partitions[relative.as_posix()] = {"sha256": sha256_file(path), "version": version,
                                           "rows": len(rows), "scored_at": week(w_of(frame))}
    (scored / STATE_FILE).write_text(json.dumps({"model": "loop",
                                                        "partitions": partitions}))
    return scored


def w_of(frame: pd.DataFrame) -> float:
    return int((frame["event_time"].min() - START).days // 7) + 1


def monitor_state(base: Path, registry: Registry, scored: Path):
    from flows.monitoring import monitoring_flow

    config = MonitoringConfig(data=str(base / "source"), scored=str(scored),
                              registry=str(registry.root), name="loop", as_of=week(16),
                              window="70d", min_positives=10, drift_sample_rows=1000, **SOURCE)
    return monitoring_flow(config, return_state=True)


def monitor(base: Path, registry: Registry, scored: Path) -> dict:
    return run_summary(monitor_state(base, registry, scored))


def test_a_champion_change_is_judged_per_version(trained):
    """Check that rows decided by v0001 (weeks 6-8) and by v0002 (weeks 9-12) are judged
    separately, each with its own decisions and reference, and that the summary names the
    rows, time ranges and versions judged."""
    registry = registry_copy(trained, "per-version", "v0002")
    scored = score_source(trained, registry, "scored-a",
                          lambda w: "v0001" if 6 <= w <= 8 else "v0002" if w >= 9 else None)
    state = monitor_state(trained, registry, scored)
    result = run_summary(state)
    assert state.name == ("Drift" if result["status"] == "drift" else "Completed")
    one, two = result["served"]["versions"]
    assert (one["version"], two["version"]) == ("v0001", "v0002")
    assert one["rows"] == 21_000 and two["rows"] == 35_000
    assert one["from"] >= week(6) and one["to"] < week(9) <= two["from"]
    assert result["version"] == "v0002"  # the champion is judged in full
    assert result["judged"]["versions"][0]["matured_rows"] == one["matured_rows"] > 0
    summary = json.loads(Path(result["reports"]["summary"]).read_text())
    assert [v["version"] for v in summary["served"]["versions"]] == ["v0001", "v0002"]
    assert "judged per version" in result["verdict"] and result["shadow"] is None
    decisions = pd.read_parquet(next(scored.rglob("*.parquet")))[DECISION]
    assert one["batch"]["flagged"] + two["batch"]["flagged"] >= int(decisions.sum())
    assert result["judged_from"] == two["from"]  # a drift event's `since`: v0002's first row


def test_a_scored_source_whose_labels_have_not_matured_cannot_be_judged_yet(trained):
    """Check that monitoring a scored source whose rows were all served within the last two
    weeks (no label matured) ends cannot-judge, with the input-drift report on the served
    rows, instead of failing in the report on an empty table."""
    from flows.monitoring import monitoring_flow

    registry = registry_copy(trained, "nothing-matured", "v0002")
    scored = score_source(trained, registry, "scored-new", lambda w: "v0002" if w == 13 else None)
    result = run_summary(monitoring_flow(MonitoringConfig(
        data=str(trained / "source"), scored=str(scored), registry=str(registry.root),
        name="loop", as_of=week(14), window="70d", drift_sample_rows=1000, **SOURCE),
        return_state=True))
    assert result["status"] == "cannot-judge" and result["served"]["matured_rows"] == 0
    assert result["judged_from"] is None
    estimate = result["estimate"]  # the early warning reads the served scores of week 13
    assert estimate["rows"] == 7000 and estimate["is_estimate"]
    assert estimate["status"] in ("no-estimated-drop", "estimated-drop")
    assert Path(result["reports"]["data_drift_html"]).is_file()


def test_a_better_challenger_is_promoted_on_shadow_evidence(trained):
    """Check that v0002 shadowing the pre-drift champion v0001 on post-drift rows passes the
    paired non-inferiority test and is promoted with evidence: shadow in history and in the
    champion pointer, while `decision` stayed v0001's."""
    registry = registry_copy(trained, "shadow-wins", "v0001")
    challenge(registry, "v0002", reason="retrained after the drift")
    scored = score_source(trained, registry, "scored-b",
                          lambda w: "v0001" if 7 <= w <= 12 else None)
    rows = pd.concat(pd.read_parquet(p) for p in scored.rglob("*.parquet"))
    assert (rows[MODEL_VERSION] == "v0001").all() and (rows["challenger_version"] == "v0002").all()
    result = monitor(trained, registry, scored)
    shadow = result["shadow"]
    assert shadow["verdict"]["status"] == "passed", shadow["verdict"]["reason"]
    assert shadow["action"] == "promote" and shadow["verdict"]["positives"] >= 10
    assert shadow["event_id"]  # rareflow.model.promoted, its payload saying evidence: shadow
    # v0001's drift is answered: no recall-drift event, whose retraining would serve nothing
    assert result["status"] == "drift" and result["event_id"] is None
    assert "v0002 was promoted on shadow evidence" in result["drift_withheld"]
    pointer = registry.champion()
    assert pointer["version"] == "v0002" and pointer["history_entry"]["evidence"] == SHADOW
    moves = [h for h in registry.history() if h.get("evidence") == SHADOW]
    assert [h["action"] for h in moves[-2:]] == ["promote", "retire"]
    assert read_challenger(registry) is None


@pytest.mark.parametrize("champion, gates, seed, failed", [
    ("v0001", {"shadow_first": True}, 0, ["shadow_first"]),
    # the champion trained on most of the candidate's test rows (same window, another seed)
    ("v0002", {"shadow_refused": True, "min_test_positives": 60, "min_recall": 0.1}, 7,
     ["champion_fair_rows"]),
])
def test_training_names_the_challenger_and_leaves_the_champion(trained, champion, gates, seed,
                                                               failed):
    """Check that a training run with gates.shadow_first (or gates.shadow_refused and too few
    fair rows) ends refused with that gate, makes its candidate the challenger and leaves the
    champion serving."""
    from flows.training import training_flow

    registry = registry_copy(trained, f"challenged-by-training-{champion}", champion)
    config = TrainingConfig(data=str(trained / "source"), label="is_fraud", positive="1",
                            registry=str(registry.root), name="loop", as_of=week(12),
                            seed=seed, **SOURCE,
                            **{**TRAIN, "gates": {**TRAIN["gates"], **gates}})
    result = run_summary(training_flow(config, return_state=True))
    assert result["status"] == "refused" and result["version"] == "v0003"
    assert [g["gate"] for g in result["verdict"]["gates"] if not g["passed"]] == failed
    assert registry.champion()["version"] == champion
    assert read_challenger(registry)["version"] == "v0003"


def test_a_worse_challenger_is_retired_with_its_verdict(trained):
    """Check that the pre-drift v0001 shadowing v0002 on post-drift rows loses the paired
    test and is retired as lost, the champion untouched."""
    registry = registry_copy(trained, "shadow-loses", "v0002")
    challenge(registry, "v0001", reason="does the old one still hold?")
    scored = score_source(trained, registry, "scored-c",
                          lambda w: "v0002" if 7 <= w <= 12 else None)
    result = monitor(trained, registry, scored)
    verdict = result["shadow"]["verdict"]
    assert verdict["status"] == "rejected", verdict["reason"]
    last = registry.history()[-1]
    assert last["action"] == "retire" and last["status"] == "lost"
    assert last["verdict"]["comparison"]["recall_drop"] > 0
    assert registry.champion()["version"] == "v0002" and read_challenger(registry) is None


def test_a_scored_source_of_another_model_exits_2(trained):
    """Check that `monitor --scored` of a source scored for another model name is one line
    naming both names, exit 2, with no report written."""
    from flows.cli import app

    registry = registry_copy(trained, "other-model", "v0002")
    scored = trained / "scored-other"
    scored.mkdir()
    (scored / STATE_FILE).write_text(json.dumps({"model": "fraud", "partitions": {}}))
    before = sorted(p.name for p in registry.dir.rglob("*"))
    result = CliRunner().invoke(app, ["monitor", "--data", str(trained / "source"), "--scored",
                                      str(scored), "--registry", str(registry.root),
                                      "--name", "loop", "--time-column", "event_time",
                                      "--label-time-column", "label_time"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "written by model 'fraud', not 'loop'" in lines[0]
    assert sorted(p.name for p in registry.dir.rglob("*")) == before
    assert np.all(registry.champion()["version"] == "v0002")
