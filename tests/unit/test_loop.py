"""The loop's plain functions: event → run config, what monitoring judges and estimates, the
per-model monitor state, the estimated recall of rows awaiting labels, the demo stream."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from schemas.config import TrainingConfig, TriggerEvent
from schemas.errors import ConfigError
from schemas.inference import infer_input_schema
from tasks.data.arrivals import config_for_event, run_config
from tasks.data.labels import label_roles
from tasks.decision.costs import DecisionCosts
from tasks.monitor.label_free_estimate import (
    CANNOT_ESTIMATE,
    ESTIMATED_DROP,
    NO_ESTIMATED_DROP,
    estimate_recall,
    reference_calibration,
)
from tasks.registry.monitor_state import read_state, record_check, since_last_check

BASE = TrainingConfig(data="fixed.parquet", label="y", window="90d", registry="reg", name="m")

COSTS = DecisionCosts(fn_cost=10, fp_cost=1)


@pytest.mark.parametrize("event, payload, data, as_of", [
    ("rareflow.data.arrived", {"source": "/data/tx", "partition": "date=2025-01-01/p.parquet",
                               "as_of": "2025-01-02T00:00:00+00:00"},
     "/data/tx", "2025-01-02T00:00:00+00:00"),
    ("rareflow.monitor.recall-drift", {"source": "/data/tx", "as_of": "2025-02-01"},
     "/data/tx", "2025-02-01"),
    ("rareflow.monitor.recall-drift", {"model": "m"}, "fixed.parquet", None),
])
def test_event_decides_source_and_as_of(event, payload, data, as_of):
    """Check that a trigger's payload sets data and as_of and keeps everything else."""
    run = config_for_event(BASE, TriggerEvent(event=event, payload=payload))
    assert (run.data, run.as_of) == (data, as_of)
    assert run.window == "90d" and run.name == "m" and run.registry == "reg"


@pytest.mark.parametrize("event, config, since", [
    ("rareflow.monitor.recall-drift", {"time_column": "ts"}, "2025-01-20T03:00:00+00:00"),
    ("rareflow.monitor.recall-drift", {"time_column": "ts", "after_drift": "window"}, None),
    ("rareflow.monitor.recall-drift", {}, None),  # no time column to compare with
    ("rareflow.data.arrived", {"time_column": "ts"}, None),
])
def test_a_drift_retraining_learns_from_the_drifted_rows(event, config, since):
    """Check that a recall-drift event's `since` (where the drifted batch began) limits the
    retraining's rows only with `after_drift: since-drift` and a time column."""
    payload = {"source": "/data/tx", "as_of": "2025-02-01",
               "since": "2025-01-20T03:00:00+00:00"}
    run = config_for_event(BASE.model_copy(update=config),
                           TriggerEvent(event=event, payload=payload))
    assert run.since == since and run.window == "90d" and run.as_of == "2025-02-01"


def test_since_that_is_not_a_time_names_the_field():
    """Check that a bad `since` is refused with a message naming `since`, not `as_of`."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="since must be a date or time"):
        BASE.model_validate({**BASE.model_dump(), "since": "last tuesday"})


def test_unknown_event_is_refused_and_as_of_is_fixed():
    """Check that an unrelated event is refused and a run always records a concrete as_of."""
    with pytest.raises(ConfigError, match="follows rareflow.data.arrived or"):
        config_for_event(BASE, TriggerEvent(event="something.else"))
    assert run_config(BASE).as_of is not None
    assert run_config(BASE.model_copy(update={"as_of": "2025-01-01"})).as_of == \
        "2025-01-01T00:00:00+00:00"


def test_a_data_arrived_run_trains_as_of_the_newest_data_at_its_start(tmp_path):
    """Check that a run started by the first arrival of a burst trains as of the newest data in
    the source when it starts (a batch landed during the trigger's 10-minute wait is in), never
    earlier than the event's as_of, at most now; a drift event's as_of is kept."""
    t0 = pd.Timestamp("2025-01-06", tz="UTC")
    source = tmp_path / "src"
    for day in range(10):  # days 0-2: the first batch; 3-9: landed before the run started
        folder = source / f"date={(t0 + pd.Timedelta(days=day)).date()}"
        folder.mkdir(parents=True)
        pd.DataFrame({"ts": [t0 + pd.Timedelta(days=day, hours=20, seconds=0.5)], "x": [1.0],
                      "y": [0]}).to_parquet(folder / "part-0.parquet", index=False)
    base = BASE.model_copy(update={"time_column": "ts"})
    first = {"source": str(source), "as_of": (t0 + pd.Timedelta(days=3)).isoformat()}
    now = t0 + pd.Timedelta(days=30)
    arrived = TriggerEvent(event="rareflow.data.arrived", payload=first)
    newest = "2025-01-15T20:00:01+00:00"  # day 9's row, to the second
    assert run_config(base, arrived, now=now).as_of == newest
    later = {**first, "as_of": (t0 + pd.Timedelta(days=20)).isoformat()}
    assert run_config(base, TriggerEvent(event="rareflow.data.arrived", payload=later),
                      now=now).as_of == "2025-01-26T00:00:00+00:00"  # the event's, later
    no_as_of = TriggerEvent(event="rareflow.data.arrived", payload={"source": str(source)})
    assert run_config(base, no_as_of, now=now).as_of == newest
    early = t0 + pd.Timedelta(days=9, hours=1)  # day 9's row lies after now: day 8's counts
    assert run_config(base, no_as_of, now=early).as_of == "2025-01-14T20:00:01+00:00"
    untimed = run_config(BASE.model_copy(update={"data": str(source)}), no_as_of, now=now)
    assert untimed.as_of == now.isoformat()  # rows without times: as of the run's start
    drift = TriggerEvent(event="rareflow.monitor.recall-drift", payload=first)
    assert run_config(base, drift, now=now).as_of == first["as_of"]


def _schema():
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    return infer_input_schema(df, label="y", positive="1", negative="0")


def test_label_roles_split_judged_and_pending():
    """Check that only labels matured after `since` are judged and newer rows are estimated."""
    t = pd.Timestamp("2025-01-10", tz="UTC")
    batch = pd.DataFrame({"x": np.arange(5.0), "y": [1, 0, 1, np.nan, 0]})
    matured = np.array([True, True, True, False, False])
    maturity = pd.Series([t - pd.Timedelta(days=3), t + pd.Timedelta(days=1),
                          t + pd.Timedelta(days=2), t + pd.Timedelta(days=9),
                          t + pd.Timedelta(days=9)])
    events = pd.Series([t - pd.Timedelta(days=20), t - pd.Timedelta(days=19),
                        t - pd.Timedelta(days=18), t + pd.Timedelta(days=1),
                        t - pd.Timedelta(days=1)])
    roles = label_roles(batch, schema=_schema(), matured=matured, maturity_time=maturity,
                        event_time=events, since=t)
    assert roles.judged.tolist() == [False, True, True, False, False]
    assert roles.pending.tolist() == [False, False, False, True, False]
    assert roles.checked_before == 1
    every = label_roles(batch, schema=_schema(), matured=None, maturity_time=None,
                        event_time=None, since=t)
    assert every.judged.tolist() == [True, True, True, False, True]


def test_monitor_state_remembers_what_was_judged(tmp_path):
    """Check that a judged check moves checked_until and a cannot-judge check does not."""
    import contextlib

    meta = {"lineage": {"as_of": "2025-01-01T00:00:00+00:00"}}
    state = read_state(tmp_path)
    assert since_last_check(state, meta) == pd.Timestamp("2025-01-01", tz="UTC")

    def result(as_of, status):
        return {"name": "m", "version": "v0001", "as_of": as_of, "status": status,
                "since": None, "matured_rows": 10, "batch": {"positives": 3},
                "decision": {"status": status}, "judged_partitions": ["date=x/p.parquet"]}

    lock = contextlib.nullcontext
    record_check(tmp_path, result("2025-01-08T00:00:00+00:00", "no-drift"), lock=lock)
    record_check(tmp_path, result("2025-01-15T00:00:00+00:00", "cannot-judge"), lock=lock)
    state = read_state(tmp_path)
    assert state["checked_until"] == "2025-01-08T00:00:00+00:00"
    assert [c["status"] for c in state["checks"]] == ["no-drift", "cannot-judge"]
    assert since_last_check(state, meta) == pd.Timestamp("2025-01-08", tz="UTC")
    newer = {"lineage": {"as_of": "2025-01-20T00:00:00+00:00"}}  # a champion trained later
    assert since_last_check(state, newer) == pd.Timestamp("2025-01-20", tz="UTC")


def _calibrated(n=20_000, seed=0):
    """Scores that are calibrated probabilities, with labels drawn from them."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.3, 8, n)
    return p, (rng.random(n) < p).astype(int)


def test_estimate_matches_realised_recall_when_scores_are_calibrated():
    """Check that on calibrated scores the estimated recall is close to the realised recall."""
    p, y = _calibrated()
    q, z = _calibrated(seed=1)
    t = 0.1
    cal = reference_calibration(p, y)
    e = estimate_recall(q, q >= t, calibration=cal, reference_scores=p,
                        reference_decisions=p >= t, costs=COSTS, reference_costs=COSTS,
                        tolerance=0.05, confidence=0.95, min_positives=20)
    realised = ((q >= t) & (z == 1)).sum() / z.sum()
    assert e.status == NO_ESTIMATED_DROP
    assert abs(e.estimated_recall - realised) < 3 * e.recall_std_error + 0.01
    assert e.as_dict()["is_estimate"] is True and "CBPE" in e.method


def test_estimate_flags_inputs_moving_below_the_threshold():
    """Check that a batch whose rows move to low scores gives an estimated drop, and a batch
    without expected positives cannot be estimated."""
    p, y = _calibrated()
    cal = reference_calibration(p, y)
    kw = dict(calibration=cal, reference_scores=p, reference_decisions=p >= 0.1, costs=COSTS,
              reference_costs=COSTS, tolerance=0.05, confidence=0.95, min_positives=20)
    shifted = np.clip(p * 0.6, 0, 1)  # covariate shift towards uncertain, unflagged rows
    assert estimate_recall(shifted, shifted >= 0.1, **kw).status == ESTIMATED_DROP
    assert estimate_recall(p[:10], p[:10] >= 0.1, **kw).status == CANNOT_ESTIMATE


def test_stream_has_late_labels_and_a_drift_week():
    """Check that the stream's labels arrive 14-28 days late and the pattern changes at the
    drift week, with ~1.5 % positives on both sides."""
    from tasks.data.demo_tables import make_stream

    s = make_stream(4, rows_per_day=500, drift_week=2, seed=3)
    late = (s["label_time"] - s["event_time"]).dt.total_seconds() / 86_400
    assert late.between(14, 28).all()
    week = (s["event_time"] - s["event_time"].min()).dt.days // 7
    before, after = s[week < 2], s[week >= 2]
    assert 0.01 < before["is_fraud"].mean() < 0.02 and 0.01 < after["is_fraud"].mean() < 0.02
    assert (after["channel"] == "phone").mean() > (before["channel"] == "phone").mean()
    pd.testing.assert_frame_equal(s, make_stream(4, rows_per_day=500, drift_week=2, seed=3))


def test_new_inputs_stream_brings_the_rings_own_transactions():
    """Check the replay's second variant: before the drift the rows are the concept variant's,
    after it a RING_SHARE of each day's rows are the ring's new online accounts, about
    RING_FRAUD_RATE of them fraud, so fraud rises; an unknown variant is refused."""
    from tasks.data.demo_tables import RING_FRAUD_RATE, RING_SHARE, STREAM_START, make_stream

    concept = make_stream(4, rows_per_day=1000, drift_week=2, seed=3)
    rings = make_stream(4, rows_per_day=1000, drift_week=2, seed=3, variant="new-inputs")
    week = (rings["event_time"] - pd.Timestamp(STREAM_START, tz="UTC")).dt.days // 7
    inputs = [c for c in concept.columns if c not in ("is_fraud", "label_time")]
    pd.testing.assert_frame_equal(rings.loc[week < 2, inputs], concept.loc[week < 2, inputs])
    after = rings[week >= 2]
    ring = (after["account_age_days"] < 60) & after["channel"].isin(["online", "phone"]) \
        & after["hour"].between(9, 17) & (after["card_present"] == 0) \
        & after["merchant_category"].isin(["travel", "marketplace", "pharmacy"])
    assert ring.sum() >= RING_SHARE * len(after)
    assert after.loc[ring, "is_fraud"].mean() > RING_FRAUD_RATE / 2
    assert after["is_fraud"].mean() > rings.loc[week < 2, "is_fraud"].mean() + 0.005
    with pytest.raises(ValueError, match="variant"):
        make_stream(1, rows_per_day=50, variant="covariate")


@pytest.mark.parametrize("today, monday", [("2026-12-04T15:00Z", "2026-11-30"),
                                           ("2026-11-30T00:00Z", "2026-11-30"),
                                           ("2026-12-06T23:59Z", "2026-11-30")])
def test_demo_stream_ends_at_the_last_whole_week_before_today(today, monday):
    """Check that the demo's landed weeks end at the Monday that starts today's week (so a
    deployment training as of now finds them in its window), and that moving the dates by
    whole weeks leaves every row, and so every figure of the demo, the same."""
    from flows.demo_loop import SHADOW, demo_start, week_end
    from tasks.data.demo_tables import STREAM_START, make_stream

    start = demo_start(today)
    assert week_end(SHADOW[1], start) == pd.Timestamp(monday, tz="UTC").isoformat()
    assert start.weekday() == 0 and start <= pd.Timestamp(today)
    dated = make_stream(2, rows_per_day=50, drift_week=1, start=start)
    fixed = make_stream(2, rows_per_day=50, drift_week=1, start=STREAM_START)
    shift = start - pd.Timestamp(STREAM_START, tz="UTC")
    assert shift % pd.Timedelta(weeks=1) == pd.Timedelta(0)
    for column in ("event_time", "label_time"):
        assert (dated[column] - fixed[column] == shift).all()
    pd.testing.assert_frame_equal(dated.drop(columns=["event_time", "label_time"]),
                                  fixed.drop(columns=["event_time", "label_time"]))


def test_as_of_is_resolved_once_and_carried_as_a_timestamp():
    """Check that freeze_as_of gives the run's timestamp and the config frozen at it (an
    empty as_of is now, to the second; a given timestamp wins), and refuses the future."""
    from datetime import UTC, datetime

    from tasks.data.scan import freeze_as_of

    now = datetime(2025, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    frozen, stamp = freeze_as_of(BASE, now=now)
    assert stamp == pd.Timestamp("2025-03-01T12:00:00Z") and frozen.as_of == stamp.isoformat()
    frozen, stamp = freeze_as_of(BASE, pd.Timestamp("2025-02-01", tz="UTC"), now=now)
    assert frozen.as_of == "2025-02-01T00:00:00+00:00"
    with pytest.raises(ConfigError, match="in the future"):
        freeze_as_of(BASE.model_copy(update={"as_of": "2026-01-01"}), now=now)
