"""Scoring a source's partitions on a Dask cluster: one Prefect task per partition.

With ``executor: dask`` each partition that may need scoring is one task run on a worker
(:mod:`tasks.runtime.dask_cluster`). The worker reads its partition from the source itself:
it hashes it when the flow has no sha256 for its size and mtime (the flow reads no partition),
and unless that content is already scored, loads the version (and the shadow challenger, when
there is one) from the registry, verifies its signature once per worker process, and scores
the partition batch by batch into a temporary file beside its place (for a scored source in
object storage: in a temporary folder of its own, then uploaded to the scored source's staging
prefix, which the flow copies in place once the keys are checked). Nothing but the task's
parameters (paths, the version's name) goes from the flow to a worker, and only the sha256,
counts and row-key hashes come back.

The flow then checks the row keys of all of them at once (each scored partition's key file read
once) and puts each in place, in the order a local run would, with the run's one ``scored_at``:
the scored source is the local path's, file for file.
A partition that fails leaves nothing behind; the others are still put in place and recorded,
then the run fails with the first failure.

Workers must see the source, the scored source and the registry at the same paths or URLs as
the flow (a local cluster does; an existing cluster needs shared storage or object storage) and
find the signing key as any rareflow command does (docs/production.md).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import RareflowError
from schemas.scoring import ScoringConfig
from tasks.data.remote_files import fetch_source
from tasks.registry.open_registry import open_registry
from tasks.runtime.dask_cluster import connect, dask_task_runner
from tasks.runtime.durable_files import sha256_file
from tasks.runtime.object_store import open_store
from tasks.runtime.object_store_api import configured_storage, is_remote
from tasks.serving.challenger_columns import scorer_of
from tasks.serving.partition_scoring import PartitionScore, Serving, no_challenger, score_partition
from tasks.serving.scored_source import ScoredSource
from tasks.serving.source_scoring import settle

logger = logging.getLogger(__name__)

_LOADED: dict[tuple[str, str, str], tuple] = {}  # in each worker: versions loaded and verified


def load_once(registry: str, name: str, version: str) -> tuple:
    """``(model, meta)`` of a version, loaded and verified once per process."""
    key = (registry, name, version)
    if key not in _LOADED:
        _LOADED[key] = open_registry(registry, name).load(version)
    return _LOADED[key]


@dataclass(frozen=True)
class WorkerServing:
    """What a worker needs to score as the flow would: where the versions are, which ones,
    and what every scored row of the run carries. No model: each worker loads its own."""

    registry: str
    name: str
    version: str
    challenger: str | None
    signature: str | None
    scored_at: pd.Timestamp
    id_column: str | None
    time_column: str | None
    storage_options: dict  # the config's (no credentials: schemas/storage.py)
    scored_store: str | None  # a scored source in object storage: workers upload to it

    @classmethod
    def of(cls, config: ScoringConfig, serving: Serving, challenger: str | None):
        registry = (config.registry if is_remote(config.registry)
                    else str(Path(config.registry).resolve()))
        return cls(registry, config.name, serving.version, challenger, serving.signature,
                   serving.scored_at, serving.id_column, serving.time_column,
                   dict(config.storage_options), _remote_out(config))

    def serving(self) -> tuple[Serving, object]:
        model, _ = load_once(self.registry, self.name, self.version)
        extra = (scorer_of(*load_once(self.registry, self.name, self.challenger))
                 if self.challenger else no_challenger)
        return Serving(model, self.version, self.signature, self.scored_at, self.id_column,
                       self.time_column), extra


@dataclass
class WorkerResult:
    """A partition's sha256 (and the size and mtime it had then), and its scores in a
    temporary file, or None when its content is already scored (a file only touched)."""

    digest: str
    stamp: list
    scored: PartitionScore | None


def score_on_worker(plan: WorkerServing, path: str, target: str | None, *, where: str,
                    digest: str | None, recorded: str | None, url: str | None = None,
                    stamp: list | None = None, staged: str | None = None
                    ) -> WorkerResult | RareflowError:
    """One partition hashed (unless ``digest`` is known) and, unless that content is the
    ``recorded`` one, scored on a worker into a temporary file beside ``target``; for a
    scored source in object storage, into a temporary folder of the worker's, then uploaded to
    ``staged`` in it. A partition in object storage (``url``, listed with ``stamp``) is fetched
    by the worker first, into a temporary folder of its own, and removed once scored.

    Bad input (a bad row, a missing column, an unverifiable version) comes back as the error,
    logged in one line, for the flow to report once the other partitions are in place.
    """
    with configured_storage(plan.storage_options), tempfile.TemporaryDirectory(
            prefix="rareflow-worker-") as scratch:
        if staged is not None:
            target = str(Path(scratch) / Path(staged).name)
        found = _score_on_worker(plan, path, target, where=where, digest=digest,
                                 recorded=recorded, url=url, stamp=stamp)
        if staged is not None and isinstance(found, WorkerResult) and found.scored:
            open_store(plan.scored_store).write(staged, found.scored.tmp.read_bytes())
            found.scored.staged = staged
        return found


def _score_on_worker(plan: WorkerServing, path: str, target: str, *, where: str,
                     digest: str | None, recorded: str | None, url: str | None,
                     stamp: list | None) -> WorkerResult | RareflowError:
    try:
        local = Path(fetch_source(url)) if url else Path(path)
        if stamp is None:
            stat = local.stat()
            stamp = [stat.st_size, stat.st_mtime_ns]
        try:
            digest = digest or sha256_file(local)
            if digest == recorded:
                return WorkerResult(digest, stamp, None)
            serving, extra = plan.serving()
            return WorkerResult(digest, stamp, score_partition(local, Path(target), serving,
                                                               where=where, extra=extra))
        finally:
            if url:
                local.unlink(missing_ok=True)
    except RareflowError as exc:
        logger.error("%s", exc)
        return exc


score_on_worker_task = task(score_on_worker, name="score-partition", cache_policy=NO_CACHE,
                            task_run_name="score-partition {where}")


def score_on_dask(source: ScoredSource, todo: list[tuple[Path, str, str | None]],
                  serving: Serving, plan: WorkerServing, config: ScoringConfig) -> list[dict]:
    """Score the ``todo`` partitions on Dask (a partition without a sha256 is hashed by its
    worker), then put each in place from the flow.

    Raises:
        The first partition's failure, once every other partition is in place.
    """
    with dask_task_runner(config.dask_address, config.dask_workers) as runner:
        client = connect(runner, config.dask_address, "dask_address")
        logger.info("Scoring %d partitions on Dask (%d workers)", len(todo),
                    len(client.scheduler_info().get("workers", {})))
        futures = [runner.submit(score_on_worker_task, parameters={
            "plan": plan, "path": str(Path(path).resolve()),
            "target": None if plan.scored_store else str(source.target(rel).resolve()),
            "staged": source.staging_key(rel) if plan.scored_store else None,
            "where": source.where(rel),
            "digest": digest, "recorded": source.partitions.get(rel, {}).get("sha256"),
            "url": source.files.urls.get(path),
            "stamp": source.stamp(path) if path in source.files.urls else None})
            for path, rel, digest in todo]
        results = [_result(future) for future in futures]
    failures = [r for r in results if isinstance(r, Exception)]
    scored = [(rel, r) for (_, rel, _), r in zip(todo, results, strict=True)
              if not isinstance(r, Exception)]
    for rel, result in scored:
        source.remember(rel, result.stamp, result.digest)
    scored = [(rel, r) for rel, r in scored if r.scored is not None]
    refused = source.check_all_repeats([(rel, r.scored) for rel, r in scored],
                                       serving.key_column)
    done = [settle(source, rel, r.digest, r.scored, serving)
            for (rel, r), error in zip(scored, refused, strict=True) if error is None]
    source.save_digests()
    failures += [error for error in refused if error is not None]
    if failures:
        raise failures[0]
    return done


def _result(future) -> WorkerResult | Exception:
    try:
        return future.result()  # a RareflowError comes back as the value
    except Exception as exc:  # reported after the other partitions are in place
        return exc


def _remote_out(config: ScoringConfig) -> str | None:
    """The scored source's URL when it is in object storage (workers upload to it)."""
    return config.out if config.out and is_remote(config.out) else None
