"""Judging what was served (tasks/monitor/served.py): a scored source joined with matured labels
by row key, each version judged on the rows it decided with its own decisions (never mixed, never
re-scored); the shadow comparison reuses the training gate's paired test; bad scored sources
are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from schemas.config import Gates, MonitoringConfig
from schemas.errors import DataError
from schemas.inference import infer_input_schema
from schemas.scored import (
    CHALLENGER_DECISION,
    CHALLENGER_SCORE,
    CHALLENGER_VERSION,
    DECISION,
    MODEL_VERSION,
    ROW_KEY,
    SCORE,
    SCORED_AT,
    STATE_FILE,
)
from tasks.data.labels import label_roles
from tasks.data.row_keys import row_keys
from tasks.data.window import SourceWindow
from tasks.decision.costs import DecisionCosts
from tasks.monitor.served import (
    VersionInfo,
    join_served,
    judge_versions,
    read_scored,
    served_summary,
    versions_in_order,
)
from tasks.monitor.shadow_comparison import shadow_verdict

COSTS = {"fn_cost": 10.0, "fp_cost": 1.0}
LABELS = ("y",)


def source(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """``n`` rows over ``n`` hours, one in ten positive, a feature and a label."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "t": pd.date_range("2025-01-01", periods=n, freq="h", tz="UTC"),
        "x": rng.normal(size=n),
        "y": (np.arange(n) % 10 == 0).astype(int),
    })


KINDS = {"x": "numeric", "t": "time"}  # key_columns of the version's schema, time "t"


def scored_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The first half decided by v0001 flagging every row, the second by v0002 flagging none."""
    half = len(frame) // 2
    first = np.arange(len(frame)) < half
    return pd.DataFrame({
        ROW_KEY: row_keys(frame, KINDS),
        SCORE: np.where(first, 0.9, 0.1), DECISION: first.astype(np.int8),
        MODEL_VERSION: np.where(first, "v0001", "v0002"),
        SCORED_AT: frame["t"] + pd.Timedelta(minutes=1)}).iloc[::-1]  # any row order


def info(frame: pd.DataFrame) -> VersionInfo:
    schema = infer_input_schema(frame[["x", "y"]].astype({"y": str}), label="y", positive="1",
                                negative="0")
    reference = frame.assign(y=frame["y"].astype(str), **{SCORE: 0.5, DECISION: 1})
    return VersionInfo(schema, 0.5, DecisionCosts.from_meta(COSTS), reference)


def config(**extra) -> MonitoringConfig:
    return MonitoringConfig(data="source", scored="scored", time_column="t", min_positives=5,
                            **extra)


def test_each_version_is_judged_on_its_own_decisions():
    """Check that a champion change inside the window gives one verdict per version, each on
    the rows it decided and with its own decisions (recall 1 for the version that flagged
    everything, 0 for the other: never the mixed 0.5), with row counts and time ranges."""
    frame = source()
    window = SourceWindow(frame, {}, event_time=frame["t"])
    served = join_served(scored_rows(frame), window, schema=info(frame).schema,
                         config=config())
    roles = label_roles(served.frame, schema=info(frame).schema, matured=served.matured,
                        maturity_time=None, event_time=served.event_time, since=None)
    assert versions_in_order(served) == ["v0001", "v0002"]
    judgements = judge_versions(served, roles, {"v0001": info(frame), "v0002": info(frame)},
                                config=config())
    assert judgements["v0001"].figures["batch"]["recall"] == 1.0
    assert judgements["v0002"].figures["batch"]["recall"] == 0.0
    summary = served_summary(served, roles, judgements)
    one, two = summary["versions"]
    assert (one["rows"], two["rows"]) == (200, 200) and summary["matured_rows"] == 400
    assert one["to"] < two["from"] and one["from"] == frame["t"].min().isoformat()
    assert two["status"] == "drift" and one["status"] == "no-drift"


def test_rows_whose_labels_matured_before_their_version_trained_are_not_judged():
    """Check that a row is judged only when its label matured after the deciding version's
    training window ended (a first scoring run over an older source scores rows the version
    may have trained on), as the re-scoring path judges, and that the summary counts them."""
    from dataclasses import replace

    from tasks.monitor.served import after_training

    frame = source()
    window = SourceWindow(frame, {}, event_time=frame["t"])
    served = join_served(scored_rows(frame), window, schema=info(frame).schema,
                         config=config())
    served = replace(served, maturity_time=served.event_time + pd.Timedelta(hours=1))
    roles = label_roles(served.frame, schema=info(frame).schema, matured=served.matured,
                        maturity_time=None, event_time=served.event_time, since=None)
    trained = frame["t"].iloc[250]  # v0002 (rows 200-399) trained as of row 250's time
    infos = {"v0001": info(frame), "v0002": replace(info(frame), trained_as_of=trained)}
    kept = after_training(served, roles, infos)
    versions = served.frame[MODEL_VERSION].to_numpy()
    assert kept.judged[versions == "v0001"].all()
    assert kept.judged[versions == "v0002"].sum() == 150  # labels of rows 250-399
    assert kept.checked_before == roles.checked_before + 50
    summary = served_summary(served, kept, judge_versions(served, kept, infos,
                                                          config=config()))
    assert [v["matured_rows"] for v in summary["versions"]] == [200, 150]
    from tasks.monitor.served import matured_after  # the challenger's cut, in the shadow test

    assert matured_after(served, trained).sum() == 150 and matured_after(served, None).all()


def test_rows_outside_the_window_and_unscored_rows_are_left_out():
    """Check that only scored rows whose source row is in the window are judged."""
    frame = source()
    inside = frame.iloc[150:].reset_index(drop=True)
    window = SourceWindow(inside, {}, event_time=inside["t"])
    scored = scored_rows(frame).iloc[:300]  # rows 399 down to 100 scored; 0-99 not yet
    served = join_served(scored, window, schema=info(frame).schema, config=config())
    assert len(served.frame) == 250  # rows 100-149 are outside the window
    assert sorted(served.frame["x"]) == sorted(frame["x"].iloc[150:])


def test_a_repeated_row_key_is_refused():
    """Check that a row key that repeats in the scored rows is a one-line DataError naming it."""
    frame = source()
    scored = scored_rows(frame)
    scored.iloc[1, 0] = scored.iloc[0, 0]
    with pytest.raises(DataError, match="row key 'row_key' repeats in scored source"):
        join_served(scored, SourceWindow(frame, {}, event_time=frame["t"]),
                    schema=info(frame).schema,
                    config=config())


@pytest.mark.parametrize("state, message", [
    ({"model": "other", "partitions": {}}, "was written by model 'other', not 'fraud': pass "
                                           "--name other"),
    (None, "is not a scored source"),
])
def test_a_scored_source_of_another_model_is_refused(tmp_path, state, message):
    """Check that a scored source written for another model name (or none) is refused."""
    frame = source()
    (tmp_path / "date=2025-01-01").mkdir()
    scored_rows(frame).to_parquet(tmp_path / "date=2025-01-01" / "part.parquet")
    if state is not None:
        (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(DataError, match=message):
        read_scored(str(tmp_path), name="fraud")
    (tmp_path / STATE_FILE).write_text(json.dumps({"model": "fraud", "partitions": {}}))
    assert len(read_scored(str(tmp_path), name="fraud")) == len(frame)


def shadowed(frame: pd.DataFrame, challenger_hits: float) -> pd.DataFrame:
    """Rows the champion decided (catching half the positives, flagging a few negatives) and
    a challenger scored catching ``challenger_hits`` of them with the same false alarms."""
    y = frame["y"].to_numpy().astype(bool)
    rank = np.cumsum(y)  # the k-th positive
    champ = (y & (rank % 2 == 0)) | (~y & (np.arange(len(y)) % 37 == 0))
    chall = (y & (rank % 100 < challenger_hits * 100)) | (~y & (np.arange(len(y)) % 37 == 0))
    return frame.assign(**{DECISION: champ.astype(int), SCORE: champ * 0.8,
                           MODEL_VERSION: "v0001", CHALLENGER_DECISION: chall.astype(int),
                           CHALLENGER_SCORE: chall * 0.8, CHALLENGER_VERSION: "v0002"})


@pytest.mark.parametrize("hits, status", [(0.95, "passed"), (0.1, "rejected"),
                                          (None, "refused")])
def test_the_shadow_comparison_is_the_training_gates_paired_test(hits, status):
    """Check that the challenger passes when it catches more positives at the same alarms,
    is rejected when it misses most, and is refused (keep shadowing) with too few positives."""
    frame = source(4000)
    rows = shadowed(frame, hits or 0.95)
    judged = np.ones(len(rows), dtype=bool) if hits is not None else np.arange(len(rows)) < 50
    verdict = shadow_verdict(rows, frame["y"].to_numpy(float), judged, champion="v0001",
                             challenger="v0002", gates=Gates(bootstrap_samples=500),
                             costs=COSTS)
    assert verdict["status"] == status, verdict["reason"]
    assert verdict["evidence"] == "shadow"
    gates = {g["gate"] for g in verdict["gates"]}
    assert ("champion_cost" in gates) == (hits is not None)
    if hits is not None:
        assert verdict["comparison"]["samples"] == 500 and verdict["rows"] == 4000


def test_a_row_key_does_not_depend_on_how_its_time_is_written():
    """Check that the content key of a row is the same with its time as ISO text or as a
    timestamp, and changes when a value does."""
    frame = source(5)
    as_text = frame["t"].map(lambda t: t.isoformat())
    keys = row_keys(frame, KINDS)
    assert list(keys) == list(row_keys(frame.assign(t=as_text), KINDS))
    changed = frame.assign(x=frame["x"] + 1)
    assert not set(keys) & set(row_keys(changed, KINDS))


@pytest.mark.parametrize("action, event", [("promote", "rareflow.model.promoted"),
                                           ("retire", "rareflow.model.rejected"),
                                           ("shadow-pending",
                                            "rareflow.model.approval-requested")])
def test_shadow_events_say_evidence_shadow(tmp_path, monkeypatch, action, event):
    """Check that a shadow promotion, a retirement and an approval request are announced with
    evidence: shadow, the champion compared with and the rows it was judged on."""
    from tasks.registry.store import Registry
    from tasks.runtime import events
    from tasks.serving.shadow import announce_shadow

    sent = []
    monkeypatch.setattr(events, "emit", lambda e, *, name, payload: sent.append(
        (e, name, payload)) or "id")
    verdict = {"champion": "v0001", "rows": 900, "positives": 25, "reason": "r",
               "comparison": {"cost_diff": -0.1}}
    entry = {"action": action, "version": "v0002", "status": "passed"}
    assert announce_shadow(Registry(tmp_path, "fraud"), entry, verdict) == "id"
    (kind, name, payload), = sent
    assert (kind, name) == (event, "fraud")
    assert payload["evidence"] == "shadow" and payload["champion"] == "v0001"
    assert payload["rows"] == 900 and payload["version"] == "v0002"
