"""`rareflow demo`: the closed loop on a living data source.

A stream of card transactions (labels arrive 2-4 weeks late; the fraud pattern changes at week
7) lands week by week: ingest → train on the source's window and promote → new weeks land and
are scored → monitor what matured since the last check (and estimate recall for rows still
awaiting labels) → recall drift → the drift event's payload retrains on the fresh window (the
path a deployment trigger takes) → gate against the champion.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from schemas.config import (
    DEMO_QUICK,
    IngestConfig,
    MonitoringConfig,
    SplitConfig,
    StrategyConfig,
    TrainingConfig,
    TriggerEvent,
)
from schemas.demo import LABEL, POSITIVE
from schemas.errors import EXIT_OK, EXIT_REJECTED
from schemas.scoring import ScoringConfig

DEMO_NAME = "demo"
WEEKS, DRIFT_WEEK = 12, 7
# (weeks landed, as of the end of week) before each step
FIRST, CHECKS = (0, 7), ((7, 9), (9, 11))
SOURCE_OPTIONS = {"time_column": "event_time", "label_time_column": "label_time"}
# training looks back 5 weeks, so a retraining after the drift learns mostly the new pattern;
# monitoring looks back 6 weeks: two weeks between checks plus the longest label delay
TRAIN_WINDOW, MONITOR_WINDOW = "35d", "42d"
POSITIVE_RATE = 0.04  # more positives than the replay's 1.5 %, so a small demo can judge recall


def demo_start(today=None) -> pd.Timestamp:
    """Week 0 of the demo's stream: the weeks it lands end at the last whole week before today
    (tasks/data/demo_tables.py: stream_start), so the source is current and deployments that train
    as of
    now find rows in their window."""
    from tasks.data.demo_tables import stream_start

    return stream_start(CHECKS[-1][1], today=today)


def week_end(week: int, start: pd.Timestamp | None = None) -> str:
    """The end of week ``week`` (the start of the next) of the stream starting at ``start``
    (default: :func:`demo_start` today)."""
    return ((demo_start() if start is None else start) + pd.Timedelta(weeks=week)).isoformat()


def make_batches(base: Path, rows: int, start: pd.Timestamp) -> dict[tuple, Path]:
    """The stream cut into the batches the demo lands, as Parquet under ``base/incoming``."""
    from tasks.data.demo_tables import EVENT_TIME, make_stream
    from tasks.data.tables import write_table

    stream = make_stream(WEEKS, rows_per_day=max(rows // (WEEKS * 7), 50),
                         positive_rate=POSITIVE_RATE, drift_week=DRIFT_WEEK, start=start)
    week = (stream[EVENT_TIME] - start).dt.days // 7
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
    from tasks.runtime.run_outcome import run_summary

    say(f"rareflow monitor --data {source} --registry {registry} --name {DEMO_NAME} "
        f"--time-column event_time --label-time-column label_time --window {MONITOR_WINDOW} "
        f"--as-of {as_of}")
    result = run_summary(monitoring_flow(MonitoringConfig(
        data=str(source), registry=registry, name=DEMO_NAME, window=MONITOR_WINDOW, as_of=as_of,
        **SOURCE_OPTIONS), return_state=True))
    say(f"  judged the labels that matured since {result['since']}: "
        f"{result['matured_rows']} rows in {len(result['judged_partitions'])} partitions")
    say(result["verdict"])
    return result


def score(path: Path, base: Path, registry: str, *, say) -> None:
    from flows.scoring import scoring_flow

    out = base / "scored" / path.name
    say(f"rareflow score --data {path} --out {out}")
    scored = scoring_flow(ScoringConfig(data=str(path), out=str(out), registry=registry,
                                        name=DEMO_NAME))
    say(f"  scored {scored['rows']} rows with demo {scored['version']}: {scored['flagged']} "
        f"flagged for review -> {scored['out']}")


def training_config(source: Path, registry: str, *, time_budget_s: float) -> TrainingConfig:
    """Training on the source's window: the quick demo's folds and candidates."""
    return TrainingConfig(data=str(source), label=LABEL, positive=POSITIVE, window=TRAIN_WINDOW,
                          registry=registry, name=DEMO_NAME, **SOURCE_OPTIONS,
                          split=SplitConfig(n_folds=DEMO_QUICK.n_folds),
                          strategy=StrategyConfig(max_candidates=DEMO_QUICK.max_candidates,
                                                  time_budget_s=time_budget_s))


def run_demo(base: Path, *, rows: int, registry: str | None, time_budget_s: float,
             train: Callable[..., int], say: Callable[[str], None]) -> int:
    """Run every step of the loop, saying what each one is; returns the exit status."""
    from flows.demo import closing_lines, demo_signing_key
    from tasks.monitor.verdict import drift_payload
    from tasks.runtime import events

    reg, source = registry or str(base / "registry"), base / "source"
    demo_signing_key(reg, say)
    start = demo_start()
    batches = make_batches(base, rows, start)
    say(f"Demo stream: {WEEKS} weeks of card transactions ({POSITIVE_RATE:.0%} fraud), labels "
        f"14-28 days late, a new fraud pattern from week {DRIFT_WEEK}: {base / 'incoming'}")
    config = training_config(source, reg, time_budget_s=time_budget_s)
    say(f"\n=== 1/6 land weeks 0-{FIRST[1] - 1} in the data source ===")
    land(batches[FIRST], source, as_of=week_end(FIRST[1], start), say=say)
    say(f"\n=== 2/6 train on the source's window as of week {FIRST[1]} and promote: rareflow "
        f"train --data {source} --time-column event_time --label-time-column label_time "
        f"--window {TRAIN_WINDOW} --as-of {week_end(FIRST[1], start)} ===")
    outcome = train(config.model_copy(update={"as_of": week_end(FIRST[1], start)}))
    (first, last), (first2, last2) = CHECKS
    say(f"\n=== 3/6 weeks {first}-{last - 1} land; score them as they arrive ===")
    land(batches[CHECKS[0]], source, as_of=week_end(last, start), say=say)
    score(batches[CHECKS[0]], base, reg, say=say)
    say(f"\n=== 4/6 monitor as of week {last}: the labels that matured since the first model "
        "===")
    monitor(source, reg, as_of=week_end(last, start), say=say)
    say(f"\n=== 5/6 weeks {first2}-{last2 - 1} land; monitor as of week {last2} ===")
    land(batches[CHECKS[1]], source, as_of=week_end(last2, start), say=say)
    result = monitor(source, reg, as_of=week_end(last2, start), say=say)
    if result["status"] != "drift":
        say("\nNo recall drift found, so nothing to retrain (the event would start it).")
    else:
        say(f"\n=== 6/6 {events.RECALL_DRIFT} → retrain on the source's window as of the "
            "check (fresh weeks included) → gate against the champion ===")
        outcome = train(config, trigger=TriggerEvent(event=events.RECALL_DRIFT,
                                                     payload=drift_payload(result)))
    say(f"\nRegistry: {reg}/{DEMO_NAME} (rareflow models list); each version's metadata.json "
        "lists the partitions it was trained on (`lineage`).")
    closing_lines(base, reg, say)
    return EXIT_OK if outcome in (EXIT_OK, EXIT_REJECTED) else outcome
