"""Checks a training run makes before it loads any data, so that a registry it could not
write, a missing signing key, a tampered champion or a champion that could not score the new
table is reported in seconds, not after an hour of training."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import TrainingConfig
from schemas.errors import ConfigError, RegistryError, ValidationFailed
from schemas.inference import InputSchema
from tasks.registry.open_registry import open_registry
from tasks.registry.store import Registry
from tasks.runtime.object_store import StorePath

logger = logging.getLogger(__name__)

MIN_FREE_BYTES = 64 * 2**20  # free space wanted for a first version (no earlier one to size)
SIZE_FACTOR = 2  # a new version may be this many times the newest one
SAMPLE_ROWS = 1000  # rows of the new table the champion's input schema is checked on


def version_bytes(folder: Path) -> int:
    """Bytes of a version's own files (monitoring reports aside)."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def expected_bytes(registry: Registry) -> int:
    """Free space a new version needs: twice the newest version, at least ``MIN_FREE_BYTES``."""
    ids = registry.version_ids()
    newest = version_bytes(registry.version_dir(ids[-1])) if ids else 0
    return max(MIN_FREE_BYTES, SIZE_FACTOR * newest)


def check_writable_dir(registry: Registry) -> None:
    """The registry's folder for this model exists (or is made) and takes a new file.

    Raises:
        RegistryError: it is a file, read-only, or cannot be made.
    """
    where = str(registry.root)
    if isinstance(registry.root, StorePath):  # object storage: write and remove a probe
        probe = f"{registry.name}/.preflight-{uuid.uuid4().hex}"
        registry.store.write(probe, b"rareflow preflight\n")  # StoreError: one line
        registry.store.delete(probe)
        return
    for folder in (registry.dir, registry.root, *registry.root.parents):
        if folder.exists() and not folder.is_dir():
            raise RegistryError(f"registry {where!r} cannot be used: {str(folder)!r} is a file, "
                                "not a directory; pass --registry with a folder")
        if folder.exists():
            break
    probe = registry.versions_dir / f".preflight-{uuid.uuid4().hex}"
    try:
        registry.versions_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"rareflow preflight\n")
    except OSError as exc:
        raise RegistryError(f"registry {where!r} is not writable ({exc.strerror or exc}); "
                            "pass --registry with a folder this user can write") from exc
    finally:
        probe.unlink(missing_ok=True)


def check_free_space(registry: Registry) -> int:
    """Enough free space for a version of the expected size; returns the bytes needed.

    Raises:
        RegistryError: less free space than that.
    """
    if isinstance(registry.root, StorePath):
        return MIN_FREE_BYTES  # object storage has no free space to check
    needed = expected_bytes(registry)
    free = shutil.disk_usage(registry.versions_dir).free
    if free < needed:
        raise RegistryError(f"registry {str(registry.root)!r} has {free / 2**20:.0f} MiB free; "
                            f"a new version needs about {needed / 2**20:.0f} MiB: free space or "
                            "pass --registry elsewhere")
    return needed


def check_approval_possible(config: TrainingConfig) -> None:
    """Manual approval needs a Prefect server a person can open (PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL

    if config.gates.approval == "manual" and not (PREFECT_API_URL.value()
                                                  or os.environ.get("PREFECT_API_URL")):
        raise ConfigError("gates.approval is 'manual' but no Prefect server is configured: "
                          "start one and set PREFECT_API_URL, so that someone can approve the "
                          "run in its UI (or set gates.approval to 'none')")


def head_rows(data: str, rows: int = SAMPLE_ROWS):
    """The first ``rows`` rows of the newest file of a data source (a file, a folder of
    partitions or a glob), with its hive partition keys as columns; None when it cannot be
    read cheaply (loading the data reports why)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from tasks.data.source_files import hive_keys, resolve_source
    from tasks.data.tables import table_format

    try:
        files = resolve_source(data)
        path = files.local(files.files[-1])
        if table_format(path) == "parquet":
            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
            frame = batch.to_pandas() if batch is not None else None
        else:
            frame = pd.read_csv(path, nrows=rows, encoding="utf-8", encoding_errors="strict")
            header = pd.read_csv(path, nrows=1, header=None, encoding="utf-8").iloc[0]
            if header.duplicated().any() or len(header) != frame.shape[1]:
                return None  # duplicate names, which pandas renames: loading says so
    except Exception as exc:  # any unreadable table: loading it reports why, in its words
        logger.debug("Preflight could not read a sample of %s: %s", data, exc)
        return None
    if frame is None or frame.empty:
        return None
    keys = {k: v for k, v in hive_keys(files.rel(path)).items() if k not in frame.columns}
    return frame.assign(**keys) if keys else frame


def incompatible(sample, schema: InputSchema) -> list[str]:
    """What makes a table unscorable by a version's frozen input schema as a whole: its
    missing feature columns, and columns whose every value has the wrong type, as the
    schema enforcement of ``score`` (:func:`tasks.data.validation.validate_batch`) reports them on
    a sample. Bad values in some rows are left to the training's own validation."""
    from tasks.data.validation import validate_batch

    try:
        validate_batch(sample, schema)
    except ValidationFailed as exc:
        return [row.problem for row in exc.failures.itertuples()
                if row.check.startswith("column_in_dataframe")
                or (row.column in sample.columns
                    and row.count >= sample[row.column].notna().sum() > 0)]
    return []


def check_champion_fits(registry: Registry, champion: str, metadata: dict,
                        config: TrainingConfig, *, chosen_by: str) -> None:
    """Refuse to train a candidate its champion could not be compared with: another label,
    or a table the champion's frozen input schema cannot score (:func:`incompatible`).
    A table without the label column, or with nothing else, is left to the validation.

    Raises:
        ConfigError: naming the model, the registry, what chose them and what to do.
    """
    if "schema" not in metadata:  # versions written before the schema was frozen
        return
    schema = InputSchema.model_validate(metadata["schema"])
    problems = []
    if schema.label != config.label:
        problems = [f"it was trained for label {schema.label!r}, not {config.label!r}"]
    else:
        sample = head_rows(config.data)
        if sample is not None and config.label in sample.columns and sample.shape[1] > 1:
            problems = incompatible(sample, schema)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(
            f"model {registry.name!r} in registry {str(registry.root)!r} (chosen by "
            f"{chosen_by}) has a champion {champion} that cannot judge {config.data!r}: "
            f"{problems[0]}{more}; to train a new model on this table pass --name NEW (or "
            "--registry DIR); nothing was registered")


def preflight(config: TrainingConfig, *, chosen_by: str = "the run's config") -> Registry:
    """Everything a training run can check before it reads data; returns the registry.

    ``chosen_by`` says where the registry and model name came from (for the messages).

    Raises:
        RegistryError: the registry cannot be written, lacks space, no signing key is
            configured, or the champion fails its signature.
        ConfigError: manual approval without a Prefect server; a champion that could not
            score the new table.
    """
    registry = open_registry(config.registry, config.name)
    check_approval_possible(config)
    check_writable_dir(registry)
    needed = check_free_space(registry)
    champion = registry.champion()
    if champion:  # first: without a key, its error names the key file that would verify it
        meta = registry.verify(champion["version"])
        check_champion_fits(registry, champion["version"], meta, config, chosen_by=chosen_by)
    registry.check_can_sign()
    logger.info("Preflight: registry %s writable, %.0f MiB needed, champion %s", registry.dir,
                needed / 2**20, champion["version"] if champion else "none")
    return registry


preflight_task = task(preflight, name="preflight", cache_policy=NO_CACHE)
