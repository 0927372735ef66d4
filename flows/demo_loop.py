"""`rareflow demo`: the closed loop on a living data source, served.

A stream of card transactions (labels arrive 2-4 weeks late; the fraud pattern changes at week
7) lands week by week: ingest → train on the source's window and promote → each arrival is
scored by the scoring flow (the path the `score` deployment takes on `rareflow.data.arrived`)
into a scored source → monitoring judges what was served (the matured labels of the rows the
champion decided) → recall drift → the drift event's payload retrains on the rows since the
drift (the path a deployment trigger takes) → with `gates.shadow_first` the candidate becomes
the challenger: scored beside the champion on every arrival, never served → monitoring compares
them on the same matured live rows → the challenger is promoted with `evidence: shadow`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from schemas.config import (
    DEMO_QUICK,
    Gates,
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
from schemas.statuses import DRIFT
from tasks.registry.champion import PROMOTE

DEMO_NAME = "demo"
WEEKS, DRIFT_WEEK = 14, 7
# (weeks landed, as of the end of week) before each step
FIRST, CHECKS, SHADOW = (0, 7), ((7, 9), (9, 11)), (11, 14)
SOURCE_OPTIONS = {"time_column": "event_time", "label_time_column": "label_time"}
# training looks back 5 weeks, so a retraining after the drift learns mostly the new pattern;
# monitoring of what was served looks back 4 weeks: its matured rows are the 2-4 weeks before
# the check (labels take 2-4 weeks), not older weeks that would dilute a drift
TRAIN_WINDOW, MONITOR_WINDOW = "35d", "28d"
POSITIVE_RATE = 0.04  # more positives than the replay's 1.5 %, so a small demo can judge recall


def demo_start(today=None) -> pd.Timestamp:
    """Week 0 of the demo's stream: the weeks it lands end at the last whole week before today
    (tasks/data/demo_tables.py: stream_start), so the source is current and deployments that train
    as of
    now find rows in their window."""
    from tasks.data.demo_tables import stream_start

    return stream_start(SHADOW[1], today=today)


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
    for first, last in (FIRST, *CHECKS, SHADOW):
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


def monitor(source: Path, scored: Path, registry: str, *, as_of: str, say) -> dict:
    from flows.monitoring import monitoring_flow
    from tasks.runtime.run_outcome import run_summary

    say(f"rareflow monitor --data {source} --scored {scored} --registry {registry} --name "
        f"{DEMO_NAME} --time-column event_time --label-time-column label_time --window "
        f"{MONITOR_WINDOW} --as-of {as_of}")
    result = run_summary(monitoring_flow(MonitoringConfig(
        data=str(source), scored=str(scored), registry=registry, name=DEMO_NAME,
        window=MONITOR_WINDOW, as_of=as_of, **SOURCE_OPTIONS), return_state=True))
    served = result["served"]
    say(f"  judged what was served: {served['matured_rows']} rows whose labels have matured "
        f"(of {served['rows']} scored rows in the window)")
    say(result["verdict"])
    return result


def score(source: Path, scored: Path, registry: str, *, say) -> None:
    from flows.scoring import scoring_flow

    say(f"rareflow score --data {source} --out {scored} --time-column event_time")
    done = scoring_flow(ScoringConfig(data=str(source), out=str(scored), registry=registry,
                                      name=DEMO_NAME, time_column=SOURCE_OPTIONS["time_column"]))
    say(f"  scored {len(done['partitions'])} new partitions ({done['rows']} rows) with demo "
        f"{done['version']}: {done['flagged']} flagged for review; {done['unchanged']} "
        f"already scored -> {done['out']}")


def training_config(source: Path, registry: str, *, time_budget_s: float) -> TrainingConfig:
    """Training on the source's window: the quick demo's folds and candidates."""
    return TrainingConfig(data=str(source), label=LABEL, positive=POSITIVE, window=TRAIN_WINDOW,
                          registry=registry, name=DEMO_NAME, **SOURCE_OPTIONS,
                          split=SplitConfig(n_folds=DEMO_QUICK.n_folds),
                          strategy=StrategyConfig(max_candidates=DEMO_QUICK.max_candidates,
                                                  time_budget_s=time_budget_s),
                          gates=Gates(shadow_first=True))


def run_demo(base: Path, *, rows: int, registry: str | None, time_budget_s: float,
             train: Callable[..., int], say: Callable[[str], None]) -> int:
    """Run every step of the loop, saying what each one is; returns the exit status."""
    from flows.demo import closing_lines, demo_signing_key

    reg, source, scored = registry or str(base / "registry"), base / "source", base / "scored"
    demo_signing_key(reg, say)
    start = demo_start()
    batches = make_batches(base, rows, start)
    say(f"Demo stream: {WEEKS} weeks of card transactions ({POSITIVE_RATE:.0%} fraud), labels "
        f"14-28 days late, a new fraud pattern from week {DRIFT_WEEK}: {base / 'incoming'}")
    config = training_config(source, reg, time_budget_s=time_budget_s)
    say(f"\n=== 1/7 land weeks 0-{FIRST[1] - 1} in the data source ===")
    land(batches[FIRST], source, as_of=week_end(FIRST[1], start), say=say)
    say(f"\n=== 2/7 train on the source's window as of week {FIRST[1]} and promote: rareflow "
        f"train --data {source} --time-column event_time --label-time-column label_time "
        f"--window {TRAIN_WINDOW} --shadow-first-gate --as-of {week_end(FIRST[1], start)} ===")
    outcome = train(config.model_copy(update={"as_of": week_end(FIRST[1], start)}))
    if outcome not in (EXIT_OK, EXIT_REJECTED):
        return outcome
    result = None
    for step, (first, last) in zip((3, 4), CHECKS, strict=True):
        say(f"\n=== {step}/7 weeks {first}-{last - 1} land and are scored as they arrive; "
            f"monitor what was served as of week {last} ===")
        land(batches[(first, last)], source, as_of=week_end(last, start), say=say)
        score(source, scored, reg, say=say)
        result = monitor(source, scored, reg, as_of=week_end(last, start), say=say)
    if result["status"] != DRIFT:
        say("\nNo recall drift found, so nothing to retrain (the event would start it).")
    else:
        outcome = shadow_steps(config, result, batches, start, say=say, train=train,
                               paths=(source, scored, reg))
    say(f"\nRegistry: {reg}/{DEMO_NAME} (rareflow models list, rareflow models history); each "
        "version's metadata.json lists the partitions it was trained on (`lineage`).")
    closing_lines(base, reg, say)
    return EXIT_OK if outcome in (EXIT_OK, EXIT_REJECTED) else outcome


def shadow_steps(config: TrainingConfig, result: dict, batches: dict, start: pd.Timestamp, *,
                 say, train, paths: tuple) -> int:
    """After the drift: retrain from the event (the candidate shadows the champion), then
    land and score new weeks (champion and challenger) and judge the challenger on them."""
    from tasks.monitor.verdict import drift_payload
    from tasks.runtime import events

    source, scored, reg = paths
    say(f"\n=== 5/7 {events.RECALL_DRIFT} → retrain on the rows since the drift → "
        "gates.shadow_first: the candidate shadows the champion instead of replacing it ===")
    outcome = train(config, trigger=TriggerEvent(event=events.RECALL_DRIFT,
                                                 payload=drift_payload(result)))
    first, last = SHADOW
    say(f"\n=== 6/7 weeks {first}-{last - 1} land; scored by the champion (served) and the "
        "challenger (shadow) ===")
    land(batches[SHADOW], source, as_of=week_end(last, start), say=say)
    score(source, scored, reg, say=say)
    say(f"\n=== 7/7 monitor as of week {last}: the challenger against the champion on the same "
        "matured live rows ===")
    shadow = monitor(source, scored, reg, as_of=week_end(last, start), say=say).get("shadow")
    if shadow and shadow["action"] == PROMOTE:
        say(f"  promoted on live evidence (evidence: shadow): {shadow['verdict']['reason']}")
    elif shadow:
        say(f"  not promoted yet: {shadow['verdict']['reason']}")
    return outcome
