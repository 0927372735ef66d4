"""The ingest flow: load the batch → check it against the source's schema → write one partition
per day, atomically → ``rareflow.data.arrived`` (which triggers retraining on the source)."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import IngestConfig
from schemas.errors import ValidationFailed
from tasks.data.ingest import announce_arrival, check_batch, write_batch
from tasks.data.scan import freeze_as_of
from tasks.data.source_files import source_path
from tasks.data.tables import load_task
from tasks.runtime.io_retries import IO_RETRIES
from tasks.runtime.object_store_api import with_config_storage


@task(name="check-batch", cache_policy=NO_CACHE)
def check_batch_task(df, *, source: str, time_column: str | None, as_of):
    """Check the batch; on failure publish the failure table as an artifact, then fail."""
    from prefect import get_run_logger

    try:
        return check_batch(df, source=source, time_column=time_column, as_of=as_of)
    except ValidationFailed as exc:
        get_run_logger().error("Batch refused:\n%s", exc.failures.to_string(index=False))
        create_table_artifact(key="ingest-failures", table=exc.failures.to_dict(orient="records"),
                              description=f"Ingest failures: {exc}")
        raise


write_batch_task = task(write_batch, name="write-partitions", cache_policy=NO_CACHE,
                        **IO_RETRIES)


@flow(name="rareflow-ingest", validate_parameters=True)
@with_config_storage
def ingest_flow(config: IngestConfig) -> dict:
    """Land a batch in a data source as new partitions and announce it."""
    config, as_of = freeze_as_of(config)
    batch = check_batch_task(load_task(config.data), source=config.source,
                             time_column=config.time_column, as_of=as_of)
    written = write_batch_task(batch, source=config.source)
    event_id = announce_arrival(config.name, source=config.source, written=written,
                                as_of=as_of)
    return {"source": source_path(config.source), "name": config.name,
            "as_of": config.as_of, "partitions": written, "event_id": event_id,
            "rows": sum(w["rows"] for w in written),
            "new_rows": sum(w["rows"] for w in written if w["new"])}
