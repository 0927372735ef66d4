"""`rareflow demo --loop`: the closed loop on a living data source.

A stream of card transactions (labels arrive 2-4 weeks late; the fraud pattern changes at week
7) lands week by week: ingest → train on the source's window → more weeks land → monitor what
matured since the last check (and estimate recall for rows still awaiting labels) → recall
drift → the drift event's payload retrains on the fresh window (the path a deployment trigger
takes) → gate against the champion.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from schemas.config import (
    IngestConfig,
    MonitoringConfig,
    SplitConfig,
    StrategyConfig,
    TrainingConfig,
    TriggerEvent,
)
from schemas.demo import LABEL, POSITIVE
from schemas.errors import EXIT_OK, EXIT_REJECTED

DEMO_NAME = "demo"
WEEKS, DRIFT_WEEK = 12, 7
# (weeks landed, as of the end of week) before each step
FIRST, CHECKS = (0, 7), ((7, 9), (9, 11))
SOURCE_OPTIONS = {"time_column": "event_time", "label_time_column": "label_time"}
# a fixed, cheap strategy (no candidate search), so the whole loop runs in well under a minute
FIXED = {"model": "hgb", "sampler": "none", "class_weight": "balanced", "calibrate": "never"}
# training looks back 5 weeks, so a retraining after the drift learns mostly the new pattern;
# monitoring looks back 6 weeks: two weeks between checks plus the longest label delay
TRAIN_WINDOW, MONITOR_WINDOW = "35d", "42d"
POSITIVE_RATE = 0.04  # more positives than the replay's 1.5 %, so a small demo can judge recall


def week_end(week: int) -> str:
    from tasks.demo import STREAM_START

    return (pd.Timestamp(STREAM_START, tz="UTC") + pd.Timedelta(weeks=week)).isoformat()


def make_batches(base: Path, rows: int) -> dict[tuple, Path]:
    """The stream cut into the batches the demo lands, as Parquet under ``base/incoming``."""
    from tasks.demo import EVENT_TIME, STREAM_START, make_stream
    from tasks.load import write_table

    stream = make_stream(WEEKS, rows_per_day=max(rows // (WEEKS * 7), 50),
                         positive_rate=POSITIVE_RATE, drift_week=DRIFT_WEEK)
    week = (stream[EVENT_TIME] - pd.Timestamp(STREAM_START, tz="UTC")).dt.days // 7
    out = {}
    for first, last in (FIRST, *CHECKS):
        rows_ = stream[(week >= first) & (week < last)]
        out[(first, last)] = write_table(rows_, base / "incoming" /
                                         f"weeks-{first:02d}-{last - 1:02d}.parquet")
    return out


def land(path: Path, source: Path, *, as_of: str, say) -> None:
    from flows.ingest import ingest_flow

    say(f"rareflow ingest --data {path} --source {source} --name {DEMO_NAME} "
        f"--time-column event_time --as-of {as_of}")
    result = ingest_flow(IngestConfig(data=str(path), source=str(source), name=DEMO_NAME,
                                      time_column="event_time", as_of=as_of))
    say(f"  {result['new_rows']} rows in {len(result['partitions'])} daily partitions; "
        f"rareflow.data.arrived emitted")


def monitor(source: Path, registry: str, *, as_of: str, say) -> dict:
    from flows.monitoring import monitoring_flow

    say(f"rareflow monitor --data {source} --registry {registry} --name {DEMO_NAME} "
        f"--time-column event_time --label-time-column label_time --window {MONITOR_WINDOW} "
        f"--as-of {as_of}")
    result = monitoring_flow(MonitoringConfig(data=str(source), registry=registry,
                                              name=DEMO_NAME, window=MONITOR_WINDOW, as_of=as_of,
                                              **SOURCE_OPTIONS))
    say(f"  judged the labels that matured since {result['since']}: "
        f"{result['matured_rows']} rows in {len(result['judged_partitions'])} partitions")
    say(result["verdict"])
    return result


def run_demo(base: Path, *, rows: int, registry: str | None, time_budget_s: float,
             train: Callable[..., int], say: Callable[[str], None]) -> int:
    """Run every step of the loop, saying what each one is; returns the exit status."""
    from flows.demo import demo_signing_key
    from tasks import events
    from tasks.drift import drift_payload

    reg, source = registry or str(base / "registry"), base / "source"
    demo_signing_key(base, say)
    batches = make_batches(base, rows)
    say(f"Demo stream: {WEEKS} weeks of card transactions ({POSITIVE_RATE:.0%} fraud), labels "
        f"14-28 days late, a new fraud pattern from week {DRIFT_WEEK}: {base / 'incoming'}")
    config = TrainingConfig(data=str(source), label=LABEL, positive=POSITIVE,
                            window=TRAIN_WINDOW,
                            registry=reg, name=DEMO_NAME, **SOURCE_OPTIONS,
                            split=SplitConfig(n_folds=3),
                            strategy=StrategyConfig(**FIXED, time_budget_s=time_budget_s))
    say(f"\n=== 1/5 land weeks 0-{FIRST[1] - 1} in the data source ===")
    land(batches[FIRST], source, as_of=week_end(FIRST[1]), say=say)
    say(f"\n=== 2/5 train on the source's window as of week {FIRST[1]}: rareflow train --data "
        f"{source} --time-column event_time --label-time-column label_time --window {TRAIN_WINDOW} "
        f"--as-of {week_end(FIRST[1])} ===")
    outcome = train(config.model_copy(update={"as_of": week_end(FIRST[1])}))
    result = None
    for step, (first, last) in zip(("3/5", "4/5"), CHECKS, strict=True):
        say(f"\n=== {step} weeks {first}-{last - 1} land; monitor as of week {last} ===")
        land(batches[(first, last)], source, as_of=week_end(last), say=say)
        result = monitor(source, reg, as_of=week_end(last), say=say)
    if result["status"] != "drift":
        say("\nNo recall drift found, so nothing to retrain (the event would start it).")
        return EXIT_OK if outcome in (EXIT_OK, EXIT_REJECTED) else outcome
    say(f"\n=== 5/5 {events.RECALL_DRIFT} → retrain on the source's window as of the check "
        "(fresh weeks included) → gate against the champion ===")
    outcome = train(config, trigger=TriggerEvent(event=events.RECALL_DRIFT,
                                                 payload=drift_payload(result)))
    say(f"\nRegistry: {reg}/{DEMO_NAME} (rareflow models list --registry {reg} --name "
        f"{DEMO_NAME}); each version's metadata.json lists the partitions it was trained on "
        "(`lineage`).")
    return EXIT_OK if outcome in (EXIT_OK, EXIT_REJECTED) else outcome
