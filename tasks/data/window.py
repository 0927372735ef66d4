"""The rows a run uses from a data source: the window as of a point in time, only rows whose
labels had matured by then, and the lineage of what was read (every file with its sha256, the
time range, the rows per class), so a version can be rebuilt bit for bit with the same as_of.

The same as_of over the same files gives the same rows in the same order: files in the order
of their paths, rows in file order. A single file without time options is read exactly as
before (:func:`tasks.data.tables.load_table`: the fast, lean path the speed benchmark measures).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import ConfigError, DataError
from tasks.data.freshness import stale_source_error
from tasks.data.labels import utc
from tasks.data.last_rows import last_positions
from tasks.data.negative_sample import (
    check_sampled_negatives,
    check_window_fits,
    memory_bytes,
)
from tasks.data.scan import Piece, Selection, SourceReader, iso, resolve_as_of
from tasks.data.source_files import partition_date_key, resolve_source, source_info
from tasks.data.spread_scan import DaskScan, spread_scan
from tasks.data.tables import load_table, release_arrow_pool
from tasks.data.validation import label_text
from tasks.runtime.durable_files import sha256_file
from tasks.runtime.io_retries import IO_RETRIES
from tasks.runtime.object_store_api import is_remote

logger = logging.getLogger(__name__)


@dataclass
class SourceWindow:
    """The rows a run uses (``frame``), what they are, and where they came from.

    For monitoring (``Selection.keep_unmatured``) ``matured`` says which rows carry a matured
    label and ``maturity_time`` when each label matures (None without label times).
    """

    frame: pd.DataFrame | None
    lineage: dict
    event_time: pd.Series | None = None
    matured: np.ndarray | None = None
    maturity_time: pd.Series | None = None
    file_of_row: np.ndarray | None = None  # index into ``paths``
    paths: list[str] | None = None

    def files_of(self, rows: np.ndarray) -> list[str]:
        """The partitions (relative paths) that hold the selected rows."""
        if self.file_of_row is None:
            return [f["path"] for f in self.lineage.get("files", [])] if rows.any() else []
        return [self.paths[i] for i in np.unique(self.file_of_row[rows])]

    def first_time(self, rows: np.ndarray) -> str | None:
        """The earliest event time of the selected rows (None without times or rows)."""
        if self.event_time is None or not rows.any():
            return None
        return iso(self.event_time[rows].min())

    def release(self) -> None:
        """Let go of the table once it has been validated (see ``LabelledData.release``)."""
        self.frame = None


def selection_from(config, *, keep_unmatured: bool = False, label: str | None = None,
                   as_of: pd.Timestamp | None = None) -> Selection:
    """The selection of a training or monitoring config (fields of the same names).

    Raises:
        ConfigError: ``since`` without a time column to compare it with.
    """
    since = getattr(config, "since", None)
    if since and not config.time_column:
        raise ConfigError(f"since {since!r} needs a time column to compare rows with: set "
                          "--time-column (or leave since empty)")
    return Selection(
        as_of=as_of if as_of is not None else resolve_as_of(config.as_of),
        label=label if label is not None else getattr(config, "label", None),
        time_column=config.time_column, window=config.window,
        label_time_column=config.label_time_column,
        label_available_column=config.label_available_column,
        label_delay_days=config.label_delay_days, keep_unmatured=keep_unmatured,
        since=utc(since) if since else None, sample=getattr(config, "sample", None),
        sample_rows=getattr(config, "sample_rows", 0), positive=getattr(config, "positive", None),
        seed=getattr(config, "seed", 0))


def _concat(series: list) -> pd.Series | None:
    return None if not series or series[0] is None else pd.concat(series, ignore_index=True)


def assemble(pieces: list[Piece], sel: Selection, *, last_picked: bool = False) -> SourceWindow:
    """One DataFrame from the files' kept rows (one Arrow → pandas conversion), with the rows'
    times and maturity; a window of the last N rows is applied here (unless ``last_picked``:
    a sampled scan picked them before sampling, :mod:`tasks.data.last_rows`)."""
    arrow = [p for p in pieces if isinstance(p.rows, pa.Table)]
    if arrow and len(arrow) != len(pieces):
        raise DataError("the source mixes Parquet and CSV partitions "
                        f"({arrow[0].rel!r} and another): keep one format per source")
    times = _concat([p.times for p in pieces])
    matured = np.concatenate([p.matured for p in pieces])
    maturity = _concat([p.maturity for p in pieces])
    n_rows = len(matured)
    file_of_row = (np.repeat(np.arange(len(pieces), dtype=np.int32),
                             [len(p.matured) for p in pieces]) if sel.keep_unmatured else None)
    last = None if last_picked else sel.last_rows
    pick = None if last is None else last_positions(times, n_rows, last)
    if arrow:
        table = pa.concat_tables([p.rows for p in pieces], promote_options="default")
        for p in pieces:
            p.rows = None
        frame = (table if pick is None else table.take(pick)).to_pandas()
        del table
        release_arrow_pool()
    else:
        frame = pd.concat([p.rows for p in pieces], ignore_index=True)
        if pick is not None:
            frame = frame.iloc[pick].reset_index(drop=True)
    if pick is not None:
        matured = matured[pick]
        times = None if times is None else times.iloc[pick].reset_index(drop=True)
        maturity = None if maturity is None else maturity.iloc[pick].reset_index(drop=True)
        file_of_row = None if file_of_row is None else file_of_row[pick]
    return SourceWindow(frame, {}, times, matured, maturity, file_of_row,
                        [p.rel for p in pieces])


def class_counts(labels: pd.Series) -> dict[str, int]:
    """Rows per label value, as text (1.0 counts as '1'; missing labels as 'null')."""
    counts = labels.value_counts(dropna=False)
    missing = int(counts[counts.index.isna()].sum())
    counts = counts[counts.index.notna()]
    text = label_text(pd.Series(counts.index)).tolist()
    out = pd.Series(counts.to_numpy(), index=text).groupby(level=0).sum()
    result = {str(k): int(v) for k, v in out.sort_index().items()}
    if missing:
        result["null"] = missing
    return result


def lineage(files, sel: Selection, reader: SourceReader | None, window: SourceWindow) -> dict:
    """What a version records about its data: the files read (sha256), the window, the time
    range and rows per class of the rows used."""
    frame, times, matured = window.frame, window.event_time, window.matured
    used = matured if matured is not None and sel.keep_unmatured else None
    labels = None
    if sel.label and sel.label in frame.columns:
        labels = frame[sel.label] if used is None else frame.loc[used, sel.label]
    read = [f for f in reader.read if f["rows_in_window"]] if reader else []
    opened = len(reader.read) if reader else 0
    return {
        "source": files.spec, "kind": files.kind,
        "root": files.spec if is_remote(files.spec) else str(files.root.resolve()),
        "as_of": iso(sel.as_of), "window": sel.window, "window_start": iso(sel.start),
        "since": iso(sel.since),
        "time_column": sel.time_column, "label_time_column": sel.label_time_column,
        "partition_date_key": reader.date_key if reader else None,  # dates rows without one
        "label_available_column": sel.label_available_column,
        "label_delay_days": sel.label_delay_days,
        "files": read,
        "files_skipped": (reader.skipped + opened - len(read)) if reader else 0,
        "rows": int(len(frame) if used is None else used.sum()),
        "rows_in_window": int(sum(f["rows_in_window"] for f in read)) if read else len(frame),
        "unmatured_rows": int(sum(f["rows_in_window"] - f["rows_matured"] for f in read)),
        "time_range": ([iso(times.min()), iso(times.max())]
                       if times is not None and len(times) else None),
        "class_counts": None if labels is None else class_counts(labels),
        "sample": reader.sampler.lineage() if reader and reader.sampler else None,
    }


def _empty_window(files, sel: Selection, reader: SourceReader) -> DataError:
    where = f"source {files.spec!r}"
    if "newest" not in reader.bounds:
        return DataError(f"{where} has no rows: land rows with `rareflow ingest`")
    newest, rel = reader.bounds["newest"]
    oldest, first = reader.bounds["oldest"]
    if oldest > sel.as_of:
        hint = (f"as_of {iso(sel.as_of)} is before its oldest rows ({iso(oldest)}, partition "
                f"{first!r}): move --as-of later")
    else:
        hint = (f"its newest rows are from {iso(newest.floor('s'))} (partition {rel!r}): move "
                "--as-of back or widen --window")
    return DataError(f"{where} has no rows in the window ({sel.describe()}); {hint}")


def read_source(data: str, sel: Selection, dask: DaskScan | None = None) -> SourceWindow:
    """The rows of ``data`` that ``sel`` selects, and their lineage; ``dask``: a folder's or
    glob's partitions are read on a Dask cluster (:mod:`tasks.data.spread_scan`).

    Raises:
        DataError: no data there, a partition is unreadable or differs from the others, the
            window is empty (for training, when the source's newest matured rows are older than
            the window, saying so), or (training) no row in it has a matured label.
    """
    files = resolve_source(data)
    if files.kind == "file" and not sel.uses_time and sel.sample is None:
        path = files.files[0]
        check_window_fits(memory_bytes(path), source=files.spec, training=not sel.keep_unmatured)
        window = SourceWindow(load_table(path), {})
        window.lineage = lineage(files, sel, None, window)
        window.lineage["files"] = [{"path": files.rel(path), "sha256": sha256_file(path),
                                    "bytes": path.stat().st_size, "rows": len(window.frame),
                                    "rows_in_window": len(window.frame),
                                    "rows_matured": len(window.frame)}]
        return window
    reader = SourceReader(files, sel)
    # one file: nothing to spread; a remote glob is fetched whole when listed (no URLs)
    spread = dask is not None and files.kind != "file" and (files.urls or not is_remote(data))
    pieces = spread_scan(reader, dask) if spread else reader.scan()
    in_window = sum(f["rows_in_window"] for f in reader.read)
    if not in_window:
        raise stale_source_error(files, sel) or _empty_window(files, sel, reader)
    if not sum(len(p.matured) for p in pieces):
        raise DataError(
            f"none of the {in_window} rows of source {files.spec!r} in the window "
            f"({sel.describe()}) has a matured label (a label counts once "
            f"{sel.label_time_column or sel.time_column} + {sel.label_delay_days:g} days <= "
            "as_of): move --as-of later, widen --window or wait for labels")
    window = assemble(pieces, sel, last_picked=reader.last is not None)
    window.lineage = lineage(files, sel, reader, window)
    logger.info("Read %d rows (%s) from %d of %d files of %s", len(window.frame),
                sel.describe(), len(reader.read), len(files.files), files.spec)
    return window


def check_window_classes(lineage_: dict, *, label: str, positive: str | None,
                         needed: int) -> None:
    """Refuse a window whose rarer class has fewer rows than the split and folds need.

    Raises:
        DataError: naming the source, the window and what to do.
    """
    counts = {k: v for k, v in (lineage_.get("class_counts") or {}).items() if k != "null"}
    if not counts:
        return
    rare = positive if positive in counts else min(counts, key=counts.get)
    have = counts.get(rare, 0) if len(counts) > 1 else 0
    if have >= needed:
        return
    what = (f"{have} rows of class {rare!r}" if len(counts) > 1
            else f"only class {next(iter(counts))!r}")
    raise DataError(
        f"the window of source {lineage_['source']!r} (last {lineage_['window'] or 'all rows'} "
        f"up to {lineage_['as_of']}, matured labels only) holds {what} in label {label!r}; the "
        f"test split and CV folds need at least {needed} of each class: widen --window, move "
        "--as-of later or wait for more labels to mature")


def check_time_options(config) -> None:
    """Refuse an ``as_of`` or a time window the source cannot honour: without a time column
    (or label times, for ``as_of``) nor dated partitions nothing says which rows came later.

    Raises:
        ConfigError: naming the setting and what to set instead.
    """
    span = Selection(as_of=pd.Timestamp(0, tz="UTC"), window=config.window).span
    needs = [f"{name} {value}" for name, value in (
        ("as_of", None if config.label_time_column else config.as_of),
        ("window", config.window if span is not None else None)) if value]
    if not needs or config.time_column:
        return
    try:
        files = resolve_source(config.data)
    except DataError:
        return  # reading the source reports it, after the preflight
    info = source_info(files.root) if files.kind == "directory" else None
    if partition_date_key(files, info) is None:
        raise ConfigError(
            f"{' and '.join(needs)} needs each row's time, and source {config.data!r} has no "
            "time column and no dated partitions: set --time-column to the column with each "
            "row's event time, lay the source out in date=YYYY-MM-DD/ folders (as `rareflow "
            "ingest` writes), or leave --as-of and --window empty")


def read_training_window(config, *, needed: int) -> SourceWindow:
    """The training rows of a TrainingConfig's source, checked for enough of each class.

    With ``since`` (a retraining after a recall drift) the rows since then are used when they
    hold enough of each class; otherwise the whole window is, and the log says why.
    """
    sel = selection_from(config)
    try:
        window = read_source(config.data, sel, DaskScan.of(config))
        check_sampled_negatives(window.lineage["sample"], source=config.data, needed=needed)
        if sel.uses_time or window.lineage["kind"] != "file" or sel.sample is not None:
            sampled = window.lineage["sample"] or {}
            check_window_classes(window.lineage, label=config.label,
                                 positive=config.positive or sampled.get("positive"),
                                 needed=needed)
    except DataError as exc:
        if sel.since is None:
            raise
        logger.warning("Training on the whole window, not only the rows from %s on: %s",
                       iso(sel.since), exc)
        return read_training_window(config.model_copy(update={"since": None}), needed=needed)
    return window


def read_monitoring_window(config, *, label: str,
                           as_of: pd.Timestamp | None = None) -> SourceWindow:
    """The rows a MonitoringConfig's source holds in its window, labels matured or not
    (``as_of``: the run's, resolved once by :func:`tasks.data.scan.freeze_as_of`)."""
    return read_source(config.data, selection_from(config, keep_unmatured=True, label=label,
                                                   as_of=as_of))


load_source_task = task(read_training_window, name="load-window", cache_policy=NO_CACHE,
                        **IO_RETRIES)
monitoring_window_task = task(read_monitoring_window, name="load-batch", cache_policy=NO_CACHE,
                              **IO_RETRIES)
