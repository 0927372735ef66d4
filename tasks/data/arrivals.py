"""The loop: what a training run started by an event trains on.

A deployment's triggers pass the event (its name and payload) to the training flow, which turns
it into the run's configuration with :func:`run_config`; the replay benchmark turns the
monitoring flow's drift payload into a run the same way. Nothing else decides what a triggered
run trains on.
"""

from __future__ import annotations

import logging
from datetime import datetime

import pandas as pd

from schemas.config import TrainingConfig, TriggerEvent
from schemas.errors import ConfigError, DataError
from tasks.data.freshness import newest_arrival
from tasks.data.scan import freeze_as_of, iso, resolve_as_of
from tasks.data.source_files import resolve_source
from tasks.data.window import check_time_options
from tasks.runtime import events

logger = logging.getLogger(__name__)

FOLLOWED = (events.DATA_ARRIVED, events.RECALL_DRIFT)


def config_for_event(config: TrainingConfig, trigger: TriggerEvent | None) -> TrainingConfig:
    """The configuration a run started by ``trigger`` trains with.

    The event's payload names the data source (``source``; ``path`` from older emitters) and
    the time to train as of (``as_of``); everything else (label, costs, window, gates, ...)
    stays as configured. A recall-drift event also says when the drifted batch began
    (``since``): with ``after_drift: since-drift`` and a time column the run trains on the
    rows from then on, so the new model learns the changed pattern rather than the old one.

    Raises:
        ConfigError: the event is not one a training run follows.

    Example:
        >>> base = TrainingConfig(data="fixed.parquet", label="y", window="90d")
        >>> event = TriggerEvent(event="rareflow.data.arrived",
        ...                      payload={"source": "/data/tx", "as_of": "2026-01-05"})
        >>> run = config_for_event(base, event)
        >>> run.data, run.as_of, run.window
        ('/data/tx', '2026-01-05', '90d')
    """
    if trigger is None:
        return config
    if trigger.event not in FOLLOWED:
        raise ConfigError(f"a training run follows {' or '.join(FOLLOWED)} events; got "
                          f"{trigger.event!r}")
    payload = trigger.payload or {}
    update = {key: str(payload[field]) for key, field in (("data", "path"), ("data", "source"),
                                                          ("as_of", "as_of"))
              if payload.get(field)}  # `path`: what emitters of rareflow 0.1 sent
    if (trigger.event == events.RECALL_DRIFT and payload.get("since") and config.time_column
            and config.after_drift == "since-drift"):
        update["since"] = str(payload["since"])
    logger.info("Following %s: %s", trigger.event,
                ", ".join(f"{k}={v}" for k, v in update.items()) or "nothing to change")
    return TrainingConfig.model_validate({**config.model_dump(), **update})


def arrival_as_of(config: TrainingConfig, *, now: datetime | None = None) -> pd.Timestamp:
    """What a run started by ``rareflow.data.arrived`` trains as of: the newest data in its
    source when the run starts (at most now), never earlier than the event's ``as_of``.

    The trigger coalesces a burst of arrivals into one run, started 10 minutes after the first
    event and given that first event; looking the source up at run start takes in every batch
    that landed meanwhile, which the first event's ``as_of`` would leave out.
    """
    now_utc = resolve_as_of(None, now=now)
    floor = resolve_as_of(config.as_of, now=now) if config.as_of else None
    try:
        files = resolve_source(config.data)
    except DataError:
        return floor or now_utc  # reading the source reports the problem
    newest = newest_arrival(files, time_column=config.time_column, now=now_utc)
    return newest if floor is None else max(floor, newest)


def run_config(config: TrainingConfig, trigger: TriggerEvent | None = None, *,
               now: datetime | None = None) -> TrainingConfig:
    """The run's configuration: the event's source and time applied, and ``as_of`` fixed (now
    when not given; for a data-arrived run, :func:`arrival_as_of`), so the version's metadata
    says exactly which window it was trained on.

    Raises:
        ConfigError: an unknown event, an ``as_of`` in the future, or an ``as_of`` or time
            window given for a source that dates no row (no time column, no dated partitions).
    """
    check_time_options(config)  # as given: an event's as_of is the time it happened
    config = config_for_event(config, trigger)
    as_of = None
    if trigger is not None and trigger.event == events.DATA_ARRIVED:
        as_of = arrival_as_of(config, now=now)
        logger.info("Training as of the newest data in %s at run start: %s", config.data,
                    iso(as_of))
    return freeze_as_of(config, as_of, now=now)[0]
