"""One pass over a source's files: which partitions the window needs, their schema, the rows
inside the window as of a time, and whether each row's label had matured by then.

Partitions outside the window are not opened when their name says so (a partition key used as
the time column, or the ``date=`` folders of a source written by ``rareflow ingest``) or their
Parquet footer's statistics of the time column do; the rows of the others are filtered as
Arrow tables (:mod:`tasks.data.window` builds one DataFrame from them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.config import WINDOW_PATTERN
from schemas.errors import ConfigError, DataError
from tasks.data.labels import event_times, matured_mask, maturity_times, utc
from tasks.data.last_rows import LastRows, Tail, last_of
from tasks.data.negative_sample import (
    NegativeSampler,
    check_window_fits,
    count_rows,
    memory_bytes,
)
from tasks.data.source_files import (
    SOURCE_FILE,
    SourceFiles,
    first_line,
    hive_keys,
    is_parquet,
    parquet_time_bounds,
    partition_date_key,
    schema_problem,
    signature,
    source_info,
)
from tasks.data.tables import PARQUET_SUFFIXES, load_table
from tasks.runtime.durable_files import sha256_file

FUTURE_SLACK = pd.Timedelta(minutes=5)  # clocks of the writer and this machine may differ
SAMPLED_BATCH_ROWS = 1 << 17  # a sampled scan holds its kept rows and one batch of this many


# -- what to read -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """Which rows of a source to use: the window up to ``as_of``, label maturity at it."""

    as_of: pd.Timestamp
    label: str | None = None
    time_column: str | None = None
    window: str | None = None
    label_time_column: str | None = None
    label_available_column: str | None = None
    label_delay_days: float = 0.0
    keep_unmatured: bool = False  # monitoring keeps them, for the estimated recall
    since: pd.Timestamp | None = None  # rows must also be at or after this (after a drift)
    sample: float | str | None = None  # training: a share of the negatives, or "auto"
    sample_rows: int = 0  # "auto": the rows to keep
    positive: str | None = None  # the class a sample keeps whole
    seed: int = 0  # which negatives a sample keeps

    @property
    def span(self) -> pd.Timedelta | None:
        """The window's length in time (None for no window or a window of rows)."""
        if not self.window:
            return None
        count, unit = WINDOW_PATTERN.fullmatch(self.window).groups()
        unit = unit.lower()[0]
        return None if unit == "r" else pd.Timedelta(**{
            {"d": "days", "w": "weeks", "h": "hours"}[unit]: int(count)})

    @property
    def last_rows(self) -> int | None:
        if not self.window or self.span is not None:
            return None
        return int(WINDOW_PATTERN.fullmatch(self.window).group(1))

    @property
    def start(self) -> pd.Timestamp | None:
        """Rows must be later than this (None: no lower bound)."""
        return None if self.span is None else self.as_of - self.span

    @property
    def uses_time(self) -> bool:
        return bool(self.time_column or self.window or self.label_time_column
                    or self.label_available_column or self.label_delay_days or self.since)

    @property
    def aux_columns(self) -> list[str]:
        """Columns that say when and whether, never features."""
        return [c for c in (self.time_column, self.label_time_column,
                            self.label_available_column) if c]

    def describe(self) -> str:
        span = f"last {self.window}" if self.window else "all rows"
        since = f" from {iso(self.since)}" if self.since is not None else ""
        return f"{span}{since} up to {iso(self.as_of)}"


def iso(stamp) -> str | None:
    return None if stamp is None or pd.isna(stamp) else utc(stamp).isoformat()


def resolve_as_of(as_of: str | None, *, now: datetime | None = None) -> pd.Timestamp:
    """``as_of`` as a UTC time (now, to the second, when empty).

    Raises:
        ConfigError: it lies in the future, where data and labels may still arrive.
    """
    now_utc = utc(now or datetime.now(UTC)).floor("s")
    if as_of is None or not str(as_of).strip():
        return now_utc
    stamp = utc(str(as_of).strip())
    if stamp > now_utc + FUTURE_SLACK:
        raise ConfigError(
            f"as_of {stamp.isoformat()} is in the future (now {now_utc.isoformat()}): rows and "
            "labels up to it may still arrive, so the result could not be rebuilt; give a past "
            "time or leave as_of empty for now")
    return stamp


def freeze_as_of(config, as_of: pd.Timestamp | None = None, *, now: datetime | None = None):
    """Resolve a run's ``as_of`` once, the one place a run does: ``as_of`` when given (e.g.
    the newest arrival), else ``config.as_of`` (now, to the second, when empty).

    Returns:
        (the config with ``as_of`` frozen as ISO text, what its metadata and Prefect's
        parameters show; the UTC timestamp itself, which the run carries on)

    Raises:
        ConfigError: ``config.as_of`` lies in the future.
    """
    stamp = resolve_as_of(config.as_of, now=now) if as_of is None else utc(as_of)
    return config.model_copy(update={"as_of": iso(stamp)}), stamp


# -- reading ----------------------------------------------------------------------------------
@dataclass
class Piece:
    """The kept rows of one file, with their event times and label maturity."""

    rel: str
    rows: pa.Table | pd.DataFrame
    times: pd.Series | None
    matured: np.ndarray
    maturity: pd.Series | None


class SourceReader:
    """One pass over a source's files: pruning, schema checks, the window, label maturity."""

    def __init__(self, files: SourceFiles, sel: Selection):
        self.files, self.sel = files, sel
        self.info = source_info(files.root) if files.kind == "directory" else None
        self.reference = dict(self.info["schema"]) if self.info else None
        self.reference_rel = SOURCE_FILE if self.info else None
        # without a time column, each partition's date stands in for its rows' event time
        self.date_key = None if sel.time_column else partition_date_key(files, self.info)
        self.pieces: list[Piece] = []
        self.read: list[dict] = []
        self.skipped = 0
        self.bounds: dict[str, tuple] = {}  # "oldest"/"newest": (time, partition)
        self.sampler = None if sel.sample is None else NegativeSampler(
            sel.sample, label=sel.label, positive=sel.positive, seed=sel.seed,
            budget=sel.sample_rows)
        self.last: LastRows | None = None  # a sampled window of rows: the rows among the last
        self.columns: list[str] | None = None  # read only these (None: all)
        self.record = True  # each read file's lineage record (its sha256)

    def where(self, rel: str) -> str:
        return f"partition {rel!r} of source {self.files.spec!r}"

    def scan(self) -> list[Piece]:
        sampler, last = self.sampler, self.sel.last_rows
        if sampler is not None and sampler.rate is None:
            sampler.resolve(self.window_rows(self._to_read(count_rows)))
        if sampler is not None and last is not None:  # the last rows, before sampling
            probe = self.probe()
            self.last = LastRows(last_of([tail for path in self.files.files for tail in
                                          probe.tail_of(path, self.files.rel(path), last)],
                                         last))
        elif sampler is None or sampler.rate >= 1.0:  # a window that cannot fit
            check_window_fits(self._to_read(memory_bytes), source=self.files.spec,
                              training=not self.sel.keep_unmatured)
        for path in self.files.files:
            self.read_file(path, self.files.rel(path))
        return self.pieces

    def window_rows(self, rows: int) -> int:
        """At most the rows a window of rows holds."""
        return rows if self.sel.last_rows is None else min(rows, self.sel.last_rows)

    def probe(self) -> SourceReader:
        """A reader of the same files that reads only the time and maturity columns, keeps
        no sample and records no file: which rows are candidates, and their times."""
        probe = SourceReader(self.files, replace(self.sel, sample=None))
        probe.info, probe.date_key = self.info, self.date_key
        probe.reference, probe.reference_rel = self.reference, self.reference_rel
        probe.columns, probe.record = self.sel.aux_columns, False
        return probe

    def tail_of(self, path: Path, rel: str, keep: int) -> list[Tail]:
        """A probe's read of one file: its last ``keep`` candidate rows (none: outside)."""
        read = len(self.pieces)
        self.read_file(path, rel)
        if len(self.pieces) == read:
            return []
        piece = self.pieces.pop()
        return [Tail.of(rel, piece.times, len(piece.matured), keep)]

    def saw(self, lo, hi, rel: str) -> None:
        if "oldest" not in self.bounds or lo < self.bounds["oldest"][0]:
            self.bounds["oldest"] = (lo, rel)
        if "newest" not in self.bounds or hi > self.bounds["newest"][0]:
            self.bounds["newest"] = (hi, rel)

    def misses(self, lo, hi) -> bool:
        """Whether rows in [lo, hi] all lie outside the window."""
        start, since = self.sel.start, self.sel.since
        return (lo > self.sel.as_of or (start is not None and hi <= start)
                or (since is not None and hi < since))

    def outside(self, lo, hi, rel: str) -> bool:
        """Whether a file whose rows lie in [lo, hi] misses the window (then it is skipped)."""
        self.saw(lo, hi, rel)
        outside = self.misses(lo, hi)
        self.skipped += int(outside)
        return outside

    def _to_read(self, measure) -> int:
        """``measure`` (rows or bytes of a file, read from its footer or size) summed over the
        files whose names or Parquet statistics do not place them outside the window."""
        total = 0
        for path in self.files.files:
            span = self.known_bounds(path, self.files.rel(path))
            if span is None or not self.misses(*span):
                total += measure(path, self.files)
        return total

    def known_span(self, rel: str, keys: dict) -> tuple | None:
        """The time span a file's name guarantees: a partition key used as the time column, or
        the `date=` folders `rareflow ingest` writes (one UTC day each)."""
        column = self.sel.time_column
        if column is None:
            return self._dated(rel, keys)
        day = keys.get(column)
        if day is None and self.info and self.info.get("time_column") == column:
            day = keys.get(self.info.get("partition_key") or "")
        if day is None:
            return None
        try:
            stamp = utc(day)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{self.where(rel)}: its folder {day!r} is not a date; rename the "
                            "folder (e.g. date=2026-11-28) or set another time column") from exc
        is_key = column in keys
        return (stamp, stamp) if is_key else (stamp, stamp + pd.Timedelta(days=1, microseconds=-1))

    def known_bounds(self, path: Path, rel: str) -> tuple | None:
        """The earliest and latest event time a file's name or Parquet footer guarantees
        (None: only reading its rows tells)."""
        span = self.known_span(rel, hive_keys(rel))
        if span is not None or not (path.name.lower().endswith(PARQUET_SUFFIXES)
                                    or is_parquet(self.files.local(path))):
            return span
        try:
            return self.footer_bounds(self.files.footer(path))  # a remote file's footer alone
        except (pa.ArrowException, OSError):
            return None  # reading it reports the problem

    def footer_bounds(self, meta) -> tuple | None:
        """The time column's bounds in a Parquet footer's statistics (None: not known)."""
        schema, column = meta.schema.to_arrow_schema(), self.sel.time_column
        if column in schema.names and pa.types.is_timestamp(schema.field(column).type):
            return parquet_time_bounds(meta, schema.get_field_index(column))
        return None

    def _remote_outside(self, path: Path, rel: str) -> bool:
        """Whether a remote Parquet file's footer, read alone, places it outside the window
        (its schema checked first, as when it is read): then it is never fetched."""
        if path not in self.files.urls or not path.name.lower().endswith(PARQUET_SUFFIXES):
            return False
        try:
            meta = self.files.footer(path)
        except (pa.ArrowException, OSError):
            return False  # reading it reports the problem
        self.check(signature(meta.schema.to_arrow_schema()), rel)
        bounds = self.footer_bounds(meta)
        return bounds is not None and self.outside(*bounds, rel)

    def _dated(self, rel: str, keys: dict) -> tuple | None:
        """The date of a partition of a source dated by its folders (no time column)."""
        if self.date_key is None:
            return None
        if self.date_key not in keys:
            raise DataError(f"{self.where(rel)} has no {self.date_key}= folder, unlike the "
                            "source's other partitions: move it into one, or set --time-column "
                            "so rows are dated by a column")
        try:
            stamp = utc(keys[self.date_key])
        except (ValueError, TypeError) as exc:
            raise DataError(f"{self.where(rel)}: its folder {keys[self.date_key]!r} is not a "
                            "date; rename the folder (e.g. date=2026-11-28) or set "
                            "--time-column") from exc
        return stamp, stamp

    def read_file(self, path: Path, rel: str) -> None:
        """One file's rows in the window (and in the sample), its lineage record."""
        keys = hive_keys(rel)
        span = self.known_span(rel, keys)
        if (span is not None and self.outside(*span, rel)) or (
                span is None and self._remote_outside(path, rel)):
            return
        path = self.files.local(path)  # a remote source's file is fetched now
        if path.name.lower().endswith(PARQUET_SUFFIXES) or is_parquet(path):
            batches = self._parquet(path, rel, skip_if_outside=span is None)
            if batches is None:
                return
        else:
            rows = load_table(path)
            self.check({str(c): "?" for c in rows.columns}, rel, names_only=True)
            batches = [(rows, rows[[c for c in self.sel.aux_columns if c in rows.columns]])]
        kept = [self._keep(rel, rows, aux, keys) for rows, aux in batches]
        self.pieces.append(kept[0][0] if len(kept) == 1 else joined([k[0] for k in kept]))
        inside, matured = (sum(k[i] for k in kept) for i in (1, 2))
        if self.last is not None:
            self.last.finish(rel)
        if self.record:
            self.read.append({"path": rel, "sha256": sha256_file(path),
                              "bytes": path.stat().st_size, "rows": len(self.pieces[-1].matured),
                              "rows_in_window": inside, "rows_matured": matured})

    def check(self, columns: dict, rel: str, *, names_only: bool = False) -> None:
        """The file's columns (name: type) against the source's; the options' columns."""
        missing = [c for c in (self.sel.label_time_column, self.sel.label_available_column)
                   if c and c not in columns]
        if missing:
            raise DataError(f"{self.where(rel)} has no column {missing[0]!r}; its columns are "
                            f"{list(columns)[:20]}: fix the option or the partition")
        if self.reference is None:
            self.reference, self.reference_rel = columns, rel
            return
        reference = {n: "?" for n in self.reference} if names_only else self.reference
        problem = schema_problem(reference, columns)
        if problem:
            raise DataError(f"{self.where(rel)} does not match the source's schema (from "
                            f"{self.reference_rel!r}): {problem}; fix or remove that partition "
                            "(`rareflow ingest` checks batches against the source's schema)")

    def _parquet(self, path: Path, rel: str, *, skip_if_outside: bool):
        try:
            meta = pq.read_metadata(path)
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.where(rel)} is not a readable Parquet file (half-written or "
                            f"corrupt: {first_line(exc)}); remove it, or land its rows again "
                            "with `rareflow ingest`, which writes partitions atomically") from exc
        self.check(signature(schema), rel)
        bounds = self.footer_bounds(meta) if skip_if_outside else None
        if bounds is not None and self.outside(*bounds, rel):
            return None
        sampled = self.sampler is not None and self.sampler.rate < 1.0
        return self._tables(path, rel, SAMPLED_BATCH_ROWS if sampled else None)

    def _tables(self, path: Path, rel: str, batch_rows: int | None):
        """The file's rows as Arrow tables with their ``aux`` columns: the whole file, or
        (``batch_rows``: a sample keeps few of them) one record batch at a time."""
        try:
            reader = pq.ParquetFile(path)
            columns = self.columns
            tables = ([reader.read(columns=columns, use_pandas_metadata=False)]
                      if batch_rows is None or not reader.metadata.num_rows else
                      (pa.Table.from_batches([batch]) for batch in reader.iter_batches(
                          batch_size=batch_rows, columns=columns, use_pandas_metadata=False)))
            for table in tables:
                if table.num_columns:  # (a table of no column would lose its rows)
                    table = table.replace_schema_metadata(None)
                yield table, pd.DataFrame(
                    {c: table.column(c).to_pandas() for c in self.sel.aux_columns
                     if c in table.column_names}, index=pd.RangeIndex(table.num_rows))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.where(rel)} could not be read (half-written or corrupt: "
                            f"{first_line(exc)}); remove it or land its rows again") from exc

    def _keep(self, rel: str, rows, aux: pd.DataFrame, keys: dict) -> tuple[Piece, int, int]:
        """Filter one file's rows (or a batch of them) to the window and judge label maturity:
        the kept rows, and how many were in the window and matured there."""
        sel, n = self.sel, len(rows)
        times = None
        if sel.time_column:
            if sel.time_column in aux.columns:
                times = event_times(aux[sel.time_column], column=sel.time_column,
                                    where=self.where(rel))
            elif sel.time_column in keys:
                times = pd.Series(utc(keys[sel.time_column]), index=pd.RangeIndex(n))
            else:
                raise DataError(f"{self.where(rel)} has no time column {sel.time_column!r} "
                                "(neither a column nor a key=value folder); fix --time-column")
            if n:
                self.saw(times.min(), times.max(), rel)
        elif self.date_key is not None:  # the partition's date, for every row of it
            times = pd.Series(self._dated(rel, keys)[0], index=pd.RangeIndex(n))
        aux = aux.reset_index(drop=True)
        inside = np.ones(n, dtype=bool)
        if times is not None:
            inside = (times <= sel.as_of).to_numpy()
            if sel.start is not None:
                inside &= (times > sel.start).to_numpy()
            if sel.since is not None:
                inside &= (times >= sel.since).to_numpy()
        matured = matured_mask(aux, label_time_column=sel.label_time_column,
                               label_available_column=sel.label_available_column,
                               delay_days=sel.label_delay_days, as_of=sel.as_of,
                               event_times=times)
        keep = inside & (matured | sel.keep_unmatured)
        if self.last is not None:
            keep = self.last.narrow(rel, keep)
        if self.sampler is not None:
            keep = self.sampler.keep(rows, keep, where=self.where(rel))
        maturity = maturity_times(aux, label_time_column=sel.label_time_column,
                                  delay_days=sel.label_delay_days, event_times=times)
        drop = [c for c in sel.aux_columns if c in aux.columns]
        if isinstance(rows, pa.Table):
            rows = rows.filter(pa.array(keep)).drop_columns(drop)
        else:
            rows = rows.loc[keep].drop(columns=drop).reset_index(drop=True)
        pick = np.flatnonzero(keep)
        piece = Piece(rel, rows, None if times is None else times.iloc[pick], matured[pick],
                      None if maturity is None else maturity.iloc[pick])
        return piece, int(inside.sum()), int((inside & matured).sum())


def joined(pieces: list[Piece]) -> Piece:
    """One file's pieces (its record batches' kept rows) as one."""
    def series(parts):
        return None if parts[0] is None else pd.concat(parts, ignore_index=True)

    return Piece(pieces[0].rel, pa.concat_tables([p.rows for p in pieces]),
                 series([p.times for p in pieces]),
                 np.concatenate([p.matured for p in pieces]),
                 series([p.maturity for p in pieces]))
