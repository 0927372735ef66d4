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
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import ConfigError, DataError, RareflowError
from tasks.data.last_rows import LastRows, Tail, last_of
from tasks.data.negative_sample import check_window_fits, count_rows, memory_bytes
from tasks.data.remote_files import mirror_file
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
    reference_rel: str | None
    date_key: str | None
    storage_options: dict

    def files(self, path: str, url: str | None, scratch: Path) -> SourceFiles:
        """The partition as a source of one file; one in object storage is fetched into
        ``scratch`` when it is read (its Parquet footer alone before that)."""
        if url is None:
            local = Path(path)
            return SourceFiles(self.spec, local.parent, [local], "file")
        local = scratch / Path(path).name
        folder = mirror_file(url, scratch)
        return SourceFiles(self.spec, scratch, [local], "file", folder.fetch, {local: url},
                           {local: url}, folder.footer)

    def reader(self, files: SourceFiles) -> SourceReader:
        reader = SourceReader(files, self.sel)
        reader.info, reader.date_key = self.info, self.date_key
        reader.reference = None if self.reference is None else dict(self.reference)
        reader.reference_rel = self.reference_rel
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
    error: RareflowError | None = None  # what reading it raised, after its schema's check


def _on_worker(plan: WorkerScan, path: str, url: str | None, work):
    """``work(reader, path)`` on a partition (fetched into a temporary folder of the
    worker's when it has a URL, removed after); a RareflowError comes back as the value."""
    with configured_storage(plan.storage_options), tempfile.TemporaryDirectory(
            prefix="rareflow-worker-") as scratch:
        try:
            files = plan.files(path, url, Path(scratch))
            return work(plan.reader(files), files.files[0])
        except RareflowError as exc:
            return exc


def measure_on_worker(plan: WorkerScan, path: str, rel: str, url: str | None):
    """(rows, uncompressed bytes) of a partition the window may use, (0, 0) otherwise, as
    the local scan's ``_to_read`` counts them (a Parquet file's footer alone)."""
    def work(reader: SourceReader, local: Path):
        span = reader.known_bounds(local, rel)
        if span is not None and reader.misses(*span):
            return 0, 0
        return count_rows(local, reader.files), memory_bytes(local, reader.files)
    return _on_worker(plan, path, url, work)


def tail_on_worker(plan: WorkerScan, path: str, rel: str, url: str | None):
    """A sampled window of rows' first pass on a partition: its last candidate rows
    (:meth:`SourceReader.tail_of`)."""
    def work(reader: SourceReader, local: Path):
        return reader.probe().tail_of(local, rel, plan.sel.last_rows)
    return _on_worker(plan, path, url, work)


def scan_on_worker(plan: WorkerScan, path: str, rel: str, url: str | None,
                   marks: Tail | None = None):
    """A partition's kept rows and lineage record (:class:`ScannedFile`); ``marks``: which of
    its candidate rows are among a window's last rows (:mod:`tasks.data.last_rows`)."""
    def work(reader: SourceReader, local: Path):
        if marks is not None:
            reader.last = LastRows({rel: marks})
        error = None
        try:
            reader.read_file(local, rel)
        except RareflowError as exc:
            error = exc
        sampler = reader.sampler
        adopted = plan.reference is None and reader.reference_rel == rel
        return ScannedFile(reader.pieces, reader.read, reader.bounds, reader.skipped,
                           sampler.before, sampler.after, sampler.positive,
                           reader.reference if adopted else None, error)
    return _on_worker(plan, path, url, work)


measure_task = task(measure_on_worker, name="measure-partition", cache_policy=NO_CACHE,
                    task_run_name="measure-partition {rel}")
tail_task = task(tail_on_worker, name="window-rows", cache_policy=NO_CACHE,
                 task_run_name="window-rows {rel}")
scan_task = task(scan_on_worker, name="scan-partition", cache_policy=NO_CACHE,
                 task_run_name="scan-partition {rel}")


def _gather(futures: list, rels: list[str], spec: str) -> list:
    """Each task's value in path order; a task that failed outright (a worker lost, out of
    memory) as a one-line error naming its partition."""
    out = []
    for future, rel in zip(futures, rels, strict=True):
        try:
            out.append(future.result())  # a RareflowError comes back as the value
        except Exception as exc:
            out.append(DataError(f"partition {rel!r} of source {spec!r} could not be read on "
                                 f"a Dask worker ({type(exc).__name__}): see the worker's log, "
                                 "or give the workers more memory"))
    return out


def _first_error(results: list) -> list:
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def spread_scan(reader: SourceReader, dask: DaskScan) -> list[Piece]:
    """:meth:`SourceReader.scan` with each partition read on a Dask worker."""
    files, sel, sampler = reader.files, reader.sel, reader.sampler
    named = {files.rel(p): reader.known_span(files.rel(p), hive_keys(files.rel(p)))
             for p in files.files}
    todo = [(path, files.rel(path), files.urls.get(path)) for path in files.files
            if named[files.rel(path)] is None or not reader.misses(*named[files.rel(path)])]
    with dask_task_runner(dask.address, dask.workers) as runner:
        connect(runner, dask.address, "strategy.dask_address")
        logger.info("Scanning %d partitions of %s on Dask", len(todo), files.spec)
        plan = WorkerScan(files.spec, sel, reader.info, reader.reference, reader.reference_rel,
                          reader.date_key, dask.storage_options)

        def each(job, plan, marks=None):
            return _gather([runner.submit(job, parameters={
                "plan": plan, "path": str(path), "rel": rel, "url": url,
                **({} if marks is None else {"marks": marks.get(rel) or Tail.none(rel)})})
                for path, rel, url in todo], [rel for _, rel, _ in todo], files.spec)

        if sampler.rate is None or (sampler.rate >= 1.0 and sel.last_rows is None):
            sizes = _first_error(each(measure_task, plan))
            if sampler.rate is None:
                sampler.resolve(reader.window_rows(sum(rows for rows, _ in sizes)))
            if sampler.rate >= 1.0 and sel.last_rows is None:  # a window that cannot fit
                check_window_fits(sum(size for _, size in sizes), source=files.spec)
        marks = None
        if sel.last_rows is not None:  # the last rows, before sampling
            marks = last_of([t for found in _first_error(each(tail_task, plan))
                             for t in found], sel.last_rows)
            reader.last = LastRows(marks)  # (the window is assembled as picked)
        scanned = iter(each(scan_task, replace(plan, sel=replace(
            sel, sample=sampler.rate, positive=sampler.positive)), marks))
    for path in files.files:  # in path order, as the local scan reads them
        rel = files.rel(path)
        if named[rel] is not None and reader.outside(*named[rel], rel):
            continue
        _merge(reader, rel, next(scanned))
    return reader.pieces


def _merge(reader: SourceReader, rel: str, part) -> None:
    """A worker's partition into the flow's reader, as if the flow had read it: its schema
    checked against the first partition's, then its own error raised."""
    if isinstance(part, Exception):
        raise part
    if part.bounds:
        reader.saw(part.bounds["oldest"][0], part.bounds["newest"][0], rel)
    reader.skipped += part.skipped
    if part.columns is not None:
        reader.check(part.columns, rel, names_only=set(part.columns.values()) == {"?"})
    if part.error is not None:
        raise part.error
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
