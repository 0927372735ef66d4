"""Flow tests under one Prefect test harness: training, gating, registry, scoring."""

import json

import numpy as np
import pandas as pd
import pytest

from flows.scoring import scoring_flow
from flows.training import training_flow
from schemas.config import Gates, StrategyConfig, TrainingConfig
from schemas.demo import LABEL
from schemas.errors import IntegrityError, ValidationFailed
from schemas.scoring import ScoringConfig
from tasks.registry.store import Registry
from tasks.runtime.run_outcome import FailedOutcome, run_summary

pytestmark = pytest.mark.slow

FAST = StrategyConfig(model="hgb", sampler="none", class_weight="none")


def config(data, registry, **kw):
    return TrainingConfig(data=str(data), label=LABEL, positive="1", registry=str(registry),
                          name="fraud", strategy=FAST, **kw)


@pytest.fixture(scope="module")
def trained(copy_small_champion, tmp_path_factory):
    """The session's small champion (v0001 of `fraud`), copied for this module."""
    return copy_small_champion(tmp_path_factory.mktemp("flow"))


def test_first_model_is_registered_and_promoted(trained):
    """Check that a first model passes, is promoted and its version holds every artifact."""
    root, _, result = trained
    assert result["status"] == "passed" and result["promoted"] and result["version"] == "v0001"
    reg = Registry(root / "registry", "fraud")
    assert reg.champion()["version"] == "v0001"
    vdir = reg.version_dir("v0001")
    for name in ("model.joblib", "metadata.json", "model_card.md", "reference.parquet"):
        assert (vdir / name).is_file(), name
    meta = reg.metadata("v0001")
    for key in ("config", "costs", "threshold", "metrics", "verdict", "fingerprints", "schema",
                "sha256", "libraries", "leaderboard", "calibration"):
        assert key in meta, key
    assert meta["fingerprints"]["train"] != meta["fingerprints"]["test"]
    assert [h["version"] for h in reg.history()] == ["v0001"]
    assert "Decision threshold" in (vdir / "model_card.md").read_text()
    ref = reg.reference("v0001")
    assert len(ref) == meta["fingerprints"]["test_rows"]
    assert {"score", "decision", LABEL} <= set(ref.columns)


def test_metrics_at_threshold_and_at_half(trained):
    """Check that the flow returns test metrics at the chosen threshold and at 0.5."""
    _, _, result = trained
    m = result["metrics"]
    assert 0 < result["threshold"] < 1
    assert m["at_threshold"]["threshold"] == result["threshold"]
    assert m["at_0_5"]["threshold"] == 0.5
    # the cost-based threshold must not be worse than 0.5 by much on test rows
    assert m["at_threshold"]["normalised_cost"] <= m["at_0_5"]["normalised_cost"] + 0.05


def test_rejected_candidate_leaves_champion_byte_identical(trained):
    """Check that a candidate failing a gate is kept but the champion file does not change."""
    from tasks.data.demo_tables import make_demo_data

    root, _, _ = trained
    reg = Registry(root / "registry", "fraud")
    before = reg.champion_path.read_bytes()
    data = root / "later.csv"  # new rows: the champion trained on none of its test rows
    make_demo_data(6000, positive_rate=0.03, seed=4).to_csv(data, index=False)
    with pytest.raises(FailedOutcome, match="not promoted") as raised:  # called plainly
        training_flow(config(data, root / "registry", gates=Gates(min_recall=1.0), seed=1))
    result = raised.value.summary
    assert result["status"] == "rejected" and not result["promoted"]
    assert reg.champion_path.read_bytes() == before
    rows = reg.summaries().set_index("version")
    assert rows.loc[result["version"], "status"] == "rejected"
    assert reg.metadata(result["version"])["compared_with"] == "v0001"


def test_tampered_or_truncated_artifact_is_refused(trained, tmp_path):
    """Check that loading verifies sha256: a changed or truncated model.joblib is refused."""
    import shutil

    root, _, _ = trained
    copy = tmp_path / "registry"
    shutil.copytree(root / "registry", copy)
    reg = Registry(copy, "fraud")
    path = reg.version_dir("v0001") / "model.joblib"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="sha256"):
        reg.load("v0001")
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(IntegrityError, match="refusing to load"):
        reg.load("champion")
    path.write_bytes(data)
    model, meta = reg.load("champion")
    assert meta["version"] == "v0001" and model.threshold == meta["threshold"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scoring_round_trip_keeps_rows_in_order(trained, tmp_path, demo_small, suffix):
    """Check that scoring writes every input row in order with score and decision appended."""
    root, _, _ = trained
    batch = demo_small.sample(500, random_state=1).drop(columns=LABEL).assign(extra="keep")
    batch.loc[batch.index[:5], "merchant_category"] = "brand_new_category"
    src = tmp_path / f"batch{suffix}"
    batch.to_parquet(src, index=False) if suffix == ".parquet" else batch.to_csv(src, index=False)
    out = tmp_path / f"scored{suffix}"
    result = scoring_flow(ScoringConfig(data=str(src), out=str(out),
                                        registry=str(root / "registry"), name="fraud"))
    scored = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(scored) == len(batch) == result["rows"]
    np.testing.assert_allclose(scored["amount"], batch["amount"].to_numpy())
    assert scored["extra"].eq("keep").all()
    assert scored["score"].between(0, 1).all()
    assert (scored["decision"] == (scored["score"] >= result["threshold"]).astype(int)).all()


def test_scoring_a_source_streams_the_same_scores_as_the_file_path(trained, tmp_path,
                                                                   demo_small):
    """Check that the scoring flow on a folder of partitions scores a trained rareflow model's
    rows as the file path does (same scores, in order), into `<source>-scored` with the
    scored contract, and that a second run scores nothing."""
    from schemas.scored import MODEL_VERSION, ROW_KEY, SCORE

    root, _, _ = trained
    batch = demo_small.drop(columns=LABEL).iloc[:600]
    source = tmp_path / "source"
    for i, part in enumerate((batch.iloc[:250], batch.iloc[250:])):
        (source / f"day={i}").mkdir(parents=True)
        part.to_parquet(source / f"day={i}" / "p.parquet", index=False)
    config = dict(registry=str(root / "registry"), name="fraud")
    batch.to_parquet(tmp_path / "whole.parquet", index=False)
    whole = scoring_flow(ScoringConfig(data=str(tmp_path / "whole.parquet"),
                                       out=str(tmp_path / "scored.parquet"), **config))
    result = scoring_flow(ScoringConfig(data=str(source), **config))
    assert result["rows"] == whole["rows"] == 600 and result["out"] == f"{source}-scored"
    streamed = pd.concat([pd.read_parquet(tmp_path / "source-scored" / f"day={i}" /
                                          "p.parquet") for i in (0, 1)], ignore_index=True)
    np.testing.assert_allclose(streamed[SCORE],
                               pd.read_parquet(tmp_path / "scored.parquet")[SCORE])
    assert streamed.columns[0] == ROW_KEY and set(streamed[MODEL_VERSION]) == {"v0001"}
    assert scoring_flow(ScoringConfig(data=str(source), **config))["partitions"] == []


def test_scoring_enforces_the_frozen_schema(trained, tmp_path, demo_small):
    """Check that a batch missing a column or with a mistyped one is refused, naming it."""
    root, _, _ = trained
    for bad, column in ((demo_small.drop(columns=["amount"]), "amount"),
                        (demo_small.assign(hour="noon"), "hour")):
        src = tmp_path / f"bad_{column}.csv"
        bad.to_csv(src, index=False)
        with pytest.raises(ValidationFailed, match=repr(column)):
            scoring_flow(ScoringConfig(data=str(src), out=str(tmp_path / "o.csv"),
                                       registry=str(root / "registry"), name="fraud"))
        assert not (tmp_path / "o.csv").exists()


def test_test_rows_do_not_influence_training(prefect_harness, tmp_path, demo_small):
    """Check that scrambling the test rows' features leaves threshold and train part unchanged."""
    from tasks.data.split import stratified_split
    from tasks.data.validation import validate_training_data

    d = validate_training_data(demo_small, label=LABEL, positive="1", test_size=0.2, n_folds=5)
    split = stratified_split(d.X, d.y, test_size=0.2, seed=0)
    scrambled = demo_small.copy()
    features = [c for c in demo_small.columns if c != LABEL]
    test_rows = split.test_idx
    scrambled.loc[test_rows, features] = demo_small.loc[test_rows[::-1], features].to_numpy()
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    demo_small.to_csv(a, index=False)
    scrambled.to_csv(b, index=False)
    ra = run_summary(training_flow(config(a, tmp_path / "ra"), return_state=True))
    rb = run_summary(training_flow(config(b, tmp_path / "rb"), return_state=True))
    assert ra["threshold"] == rb["threshold"]
    fa = Registry(tmp_path / "ra", "fraud").metadata("v0001")["fingerprints"]
    fb = Registry(tmp_path / "rb", "fraud").metadata("v0001")["fingerprints"]
    assert fa["train"] == fb["train"] and fa["test"] != fb["test"]


def test_champion_json_is_valid_json_after_runs(trained):
    """Check that champion.json parses and names an existing version."""
    root, _, _ = trained
    reg = Registry(root / "registry", "fraud")
    pointer = json.loads(reg.champion_path.read_text())
    assert pointer["version"] in reg.version_ids()


def test_full_table_is_freed_before_fitting(prefect_harness, tmp_path, demo_small, monkeypatch):
    """Check that when the flow hands memory back before fitting, no task's kept context still
    holds the full table (only the train and test parts, which are copies, are alive)."""
    import gc

    import flows.training as training_module

    alive = []

    def check_then_release():
        gc.collect()
        alive.extend(o.shape for o in gc.get_objects()
                     if isinstance(o, pd.DataFrame) and len(o) == len(demo_small)
                     and o is not demo_small)

    monkeypatch.setattr(training_module, "release_memory", check_then_release)
    data = tmp_path / "train.csv"
    demo_small.to_csv(data, index=False)
    training_flow(config(data, tmp_path / "registry"))
    assert alive == [], f"the full table is still referenced: {alive}"
