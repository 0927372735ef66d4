"""The scoring flow: score a batch with a registered version, in input order; or score the
partitions of a data source not yet scored into a scored source, a partition at a time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from schemas.errors import ConfigError
from schemas.scored import DECISION
from schemas.scoring import ScoringConfig
from tasks.data.source_files import DATA_SUFFIXES, GLOB_CHARS, resolve_source
from tasks.data.tables import load_task
from tasks.registry.open_registry import open_registry
from tasks.registry.store import Registry
from tasks.runtime.object_store_api import is_remote, with_config_storage
from tasks.serving.batch_scoring import load_model_task, score_task, write_task
from tasks.serving.challenger_columns import challenger_scorer, challenger_version
from tasks.serving.partition_scoring import Serving, no_challenger, score_partition
from tasks.serving.scored_source import ScoredSource, default_out, signature_digest
from tasks.serving.source_scoring import score_pending
from tasks.serving.spread_scoring import WorkerServing, score_on_dask

score_partition_task = task(score_partition, name="score-partition", cache_policy=NO_CACHE,
                            task_run_name="score-partition {where}")


def is_single_file(data: str) -> bool:
    """A batch (one file: scored as before) rather than a source (a folder or a glob)."""
    if is_remote(data):  # s3://...: a file is named by its suffix
        return not GLOB_CHARS & set(data) and data.lower().endswith(DATA_SUFFIXES)
    path = Path(data)
    return not path.is_dir() and (path.exists() or not GLOB_CHARS & set(data))


def serving_of(config: ScoringConfig, registry: Registry, model, meta: dict) -> Serving:
    version = meta["version"]
    return Serving(model, version, signature_digest(registry.version_dir(version)),
                   pd.Timestamp.now(tz="UTC"), config.id_column, config.time_column)


@flow(name="rareflow-score", validate_parameters=True)
@with_config_storage
def scoring_flow(config: ScoringConfig) -> dict:
    """Score a batch (a file) or the partitions of a source not yet scored, with the champion
    (or a named version)."""
    registry = open_registry(config.registry, config.name)
    model, meta = load_model_task(registry, config.version)
    log = get_run_logger()
    if is_single_file(config.data):
        if not config.out:
            raise ConfigError(f"--out is required to score the file {config.data!r}: give the "
                              "scored file's path")
        scored = score_task(model, load_task(config.data))
        out = write_task(scored, config.out)
        flagged = int(scored[DECISION].sum())
        log.info("Scored %d rows with %s %s (threshold %.4f): %d flagged; wrote %s",
                 len(scored), config.name, meta["version"], model.threshold, flagged, out)
        return {"version": meta["version"], "rows": len(scored), "flagged": flagged,
                "out": out, "threshold": model.threshold}
    files = resolve_source(config.data)
    source = ScoredSource.open(files, config.out or default_out(files), config.name)
    serving = serving_of(config, registry, model, meta)
    with source.locked():
        source.keyed_as(serving)
        todo = source.pending(hash_new=config.executor != "dask")  # workers hash their own
        if config.executor == "dask" and todo:
            challenger = challenger_version(registry) if config.version == "champion" else None
            done = score_on_dask(source, todo, serving,
                                 WorkerServing.of(config, serving, challenger), config)
        else:
            extra = challenger_scorer(registry) if config.version == "champion" else no_challenger
            done = score_pending(source, todo, serving, extra=extra,
                                 score_one=score_partition_task)
    rows, flagged = sum(d["rows"] for d in done), sum(d["flagged"] for d in done)
    log.info("Scored %d new partitions (%d rows, %d flagged) of %s with %s %s; %d already "
             "scored; in %s", len(done), rows, flagged, config.data, config.name,
             meta["version"], len(files.files) - len(done), source.out)
    return {"version": meta["version"], "rows": rows, "flagged": flagged,
            "out": str(source.out), "threshold": model.threshold, "partitions": done,
            "unchanged": len(files.files) - len(done)}
