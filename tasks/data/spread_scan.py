"""Reading a sampled training window on a Dask cluster: one Prefect task per partition.

With ``strategy.executor: dask`` and a ``sample``, each partition of a folder or glob source is
read on a worker (:mod:`tasks.runtime.dask_cluster`): the worker opens it from the source
itself (a partition in object storage is fetched into a temporary folder of the worker's and
removed once read), applies the window, label maturity and the negative sample as the local
scan does (:meth:`tasks.data.scan.SourceReader.read_file`), and sends back only what the window
keeps (every positive and the sampled negatives, with their times and maturity) and the file's
lineage record (sha256, rows). For ``sample: auto`` the workers first count each partition's
rows, so the rate is chosen before any row is kept. The flow reads no partition: only the
listing and the source's schema file.

The flow then merges the partitions in path order, checking each one's schema against the
first's as the local scan does: the same rows in the same order, the same lineage, the same
first error. Workers must see the source at the same path or URL as the flow, with the
cloud's credentials in their environment (docs/production.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import ConfigError, RareflowError
from tasks.data.last_rows import LastRows, last_of
from tasks.data.negative_sample import check_window_fits, count_rows, memory_bytes
from tasks.data.remote_files import fetch_source
from tasks.data.scan import Piece, Selection, SourceReader
from tasks.data.source_files import SourceFiles, hive_keys
from tasks.runtime.dask_cluster import connect, dask_task_runner
from tasks.runtime.object_store_api import configured_storage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaskScan:
    """Where the scan runs: the config's cluster settings and storage options."""

    address: str | None
    workers: int
    storage_options: dict = field(default_factory=dict)

    @classmethod
    def of(cls, config) -> DaskScan | None:
        """A training config's, when its fits run on Dask and it samples; else None."""
        strategy = config.strategy
        if strategy.executor != "dask" or config.sample is None:
            return None
        return cls(strategy.dask_address, strategy.dask_workers, dict(config.storage_options))


@dataclass(frozen=True)
class WorkerScan:
    """What a worker needs to read a partition as the flow's reader would."""

    spec: str
    sel: Selection  # with the sample's rate resolved
    info: dict | None
    reference: dict | None
    date_key: str | None
    storage_options: dict

    def reader(self, local: Path) -> SourceReader:
        reader = SourceReader(SourceFiles(self.spec, local.parent, [local], "file"), self.sel)
        reader.info, reader.date_key = self.info, self.date_key
        reader.reference = None if self.reference is None else dict(self.reference)
        return reader


@dataclass
class ScannedFile:
    """One partition as the flow merges it."""

    pieces: list[Piece]
    read: list[dict]
    bounds: dict
    skipped: int
    before: dict
    after: dict
    positive: str | None
    columns: dict | None  # its schema, when the flow checks it (no schema file)


def _on_worker(plan: WorkerScan, path: str, url: str | None, work):
    """``work(reader, local path)`` on a partition, fetched first when it has a URL; a
    RareflowError comes back as the value (the flow raises the first one in path order)."""
    with configured_storage(plan.storage_options):
        try:
            local = Path(fetch_source(url)) if url else Path(path)
            try:
                return work(plan.reader(local), local)
            finally:
                if url:
                    local.unlink(missing_ok=True)
        except RareflowError as exc:
            return exc


def measure_on_worker(plan: WorkerScan, path: str, rel: str, url: str | None):
    """(rows, uncompressed bytes) of a partition the window may use, (0, 0) otherwise, as
    the local scan's ``_to_read`` counts them."""
    def work(reader: SourceReader, local: Path):
        span = reader.known_bounds(local, rel)
        if span is not None and reader.misses(*span):
            return 0, 0
        return count_rows(local), memory_bytes(local)
    return _on_worker(plan, path, url, work)


def candidates_on_worker(plan: WorkerScan, path: str, rel: str, url: str | None):
    """A sampled window of rows' first pass on a partition: its candidate rows' times
    (:meth:`SourceReader.probe`)."""
    def work(reader: SourceReader, local: Path):
        probe = reader.probe()
        probe.read_file(local, rel)
        return probe.candidates()
    return _on_worker(plan, path, url, work)


def scan_on_worker(plan: WorkerScan, path: str, rel: str, url: str | None,
                   marks: np.ndarray | None = None):
    """A partition's kept rows and lineage record (:class:`ScannedFile`); ``marks``: which of
    its candidate rows are among a window's last rows (:mod:`tasks.data.last_rows`)."""
    def work(reader: SourceReader, local: Path):
        if marks is not None:
            reader.last = LastRows({rel: marks})
        reader.read_file(local, rel)
        sampler = reader.sampler
        adopted = plan.reference is None and reader.reference_rel == rel
        return ScannedFile(reader.pieces, reader.read, reader.bounds, reader.skipped,
                           sampler.before, sampler.after, sampler.positive,
                           reader.reference if adopted else None)
    return _on_worker(plan, path, url, work)


measure_task = task(measure_on_worker, name="measure-partition", cache_policy=NO_CACHE,
                    task_run_name="measure-partition {rel}")
candidates_task = task(candidates_on_worker, name="window-rows", cache_policy=NO_CACHE,
                       task_run_name="window-rows {rel}")
scan_task = task(scan_on_worker, name="scan-partition", cache_policy=NO_CACHE,
                 task_run_name="scan-partition {rel}")


def _first_error(results: list):
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def _gather(futures: list) -> list:
    out = []
    for future in futures:
        try:
            out.append(future.result())  # a RareflowError comes back as the value
        except Exception as exc:  # the task itself failed: reported in path order
            out.append(exc)
    return _first_error(out)


def spread_scan(reader: SourceReader, dask: DaskScan) -> list[Piece]:
    """:meth:`SourceReader.scan` with each partition read on a Dask worker."""
    files, sel = reader.files, reader.sel
    todo = [(path, files.rel(path), files.urls.get(path)) for path in files.files]
    todo = [(path, rel, url) for path, rel, url in todo
            if not _named_outside(reader, rel)]
    with dask_task_runner(dask.address, dask.workers) as runner:
        connect(runner, dask.address, "strategy.dask_address")
        logger.info("Scanning %d partitions of %s on Dask", len(todo), files.spec)
        plan = WorkerScan(files.spec, sel, reader.info, reader.reference, reader.date_key,
                          dask.storage_options)

        def each(job, plan, marks=None):
            return _gather([runner.submit(job, parameters={
                "plan": plan, "path": str(path), "rel": rel, "url": url,
                **({} if marks is None else {"marks": marks.get(rel, np.zeros(0, bool))})})
                for path, rel, url in todo])

        sizes = each(measure_task, plan)
        sampler = reader.sampler
        if sampler.rate is None:
            sampler.resolve(reader.window_rows(sum(rows for rows, _ in sizes)))
        if sampler.rate >= 1.0:  # a window that cannot fit
            check_window_fits(sum(size for _, size in sizes), source=files.spec)
        marks = None
        if sampler.rate < 1.0 and sel.last_rows is not None:  # the last rows, before sampling
            marks = last_of([c for found in each(candidates_task, plan) for c in found],
                            sel.last_rows)
            reader.last = LastRows(marks)  # (the window is assembled as sampled-last)
        scanned = each(scan_task, replace(plan, sel=replace(sel, sample=sampler.rate,
                                                            positive=sampler.positive)), marks)
    for (_, rel, _), part in zip(todo, scanned, strict=True):
        _merge(reader, rel, part)
    return reader.pieces


def _named_outside(reader: SourceReader, rel: str) -> bool:
    """Whether the partition's name places it outside the window (it is not sent)."""
    span = reader.known_span(rel, hive_keys(rel))
    return span is not None and reader.outside(*span, rel)


def _merge(reader: SourceReader, rel: str, part: ScannedFile) -> None:
    """A worker's partition into the flow's reader, as if the flow had read it."""
    if part.bounds:
        reader.saw(part.bounds["oldest"][0], part.bounds["newest"][0], rel)
    reader.skipped += part.skipped
    if part.columns is not None:
        reader.check(part.columns, rel, names_only=set(part.columns.values()) == {"?"})
    reader.pieces += part.pieces
    reader.read += part.read
    sampler = reader.sampler
    for name in ("positive", "negative"):
        sampler.before[name] += part.before[name]
        sampler.after[name] += part.after[name]
    if part.positive is not None:
        if sampler.positive not in (None, part.positive):
            raise ConfigError(f"sample: partition {rel!r} of source {reader.files.spec!r} "
                              f"holds class {part.positive!r} where others hold "
                              f"{sampler.positive!r}: set --positive")
        sampler.positive = part.positive
