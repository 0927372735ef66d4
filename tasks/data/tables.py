"""Reading and writing tables: CSV, gzipped CSV and Parquet, with clear errors."""

from __future__ import annotations

import csv
import gc
import gzip
import io
import logging
import os
import sys
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.errors import ConfigError, DataError, storage_error
from tasks.runtime._heap import trim_heap
from tasks.runtime.io_retries import IO_RETRIES
from tasks.runtime.object_store_api import is_remote

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv")
MAX_INPUT_BYTES_ENV = "RAREFLOW_MAX_INPUT_BYTES"
# The most CSV text one data file may hold once decompressed (1 GiB): a larger table belongs in
# Parquet or a partitioned source; RAREFLOW_MAX_INPUT_BYTES raises it.
MAX_INPUT_BYTES = 1 << 30


def table_format(path: Path) -> str:
    """Return 'parquet' or 'csv' from a file name (Parquet by its magic bytes otherwise)."""
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(CSV_SUFFIXES) or name.endswith(".gz"):
        return "csv"
    try:
        with open(path, "rb") as fh:
            if fh.read(4) == b"PAR1":
                return "parquet"
    except OSError:
        pass
    return "csv"


def load_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or Parquet file into a DataFrame.

    Raises:
        DataError: the file is missing, not a file, empty, unreadable, has no data rows,
            or has duplicate column names; the message names the file and the problem.
    """
    if is_remote(path):  # s3://...: fetched for this run
        from tasks.data.remote_files import fetch_source

        path = fetch_source(str(path))
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist")
    if path.is_dir():
        raise DataError(f"data path {str(path)!r} is a directory; give a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise DataError(f"data file {str(path)!r} is empty (0 bytes)")
    fmt = table_format(path)
    df = _read_parquet(path) if fmt == "parquet" else _read_csv(path)
    release_arrow_pool()  # the Arrow table was converted and dropped: free its buffers
    dupes = [name for name, n in Counter(map(str, df.columns)).items() if n > 1]
    if dupes:
        raise DataError(f"data file {str(path)!r} has duplicate column names: {dupes}")
    if len(df.columns) == 0:
        raise DataError(f"data file {str(path)!r} has no columns")
    if len(df) == 0:
        raise DataError(f"data file {str(path)!r} has a header but no data rows")
    logger.info("Loaded %s: %d rows x %d columns", path, len(df), df.shape[1])
    return df


def release_memory() -> None:
    """Hand memory freed by dropped tables back to the operating system.

    Parquet columns live in pyarrow's memory pool (mimalloc or jemalloc), which keeps freed
    memory for reuse: after the full table is dropped it still holds about its size.
    Returning it (and glibc's free heap) keeps the peak of the fitting that follows low.
    """
    gc.collect()
    release_arrow_pool()
    trim_heap()


def release_arrow_pool() -> None:
    """Return the memory pyarrow's pool keeps after its tables are dropped."""
    if "pyarrow" in sys.modules:
        import pyarrow

        pyarrow.default_memory_pool().release_unused()


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for corrupt files
        raise DataError(
            f"data file {str(path)!r} is not a readable Parquet file: {_first_line(exc)}"
        ) from exc


def _read_csv(path: Path) -> pd.DataFrame:
    compressed = _is_gzip(path)
    try:
        header = _read_header(path, compressed)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"data file {str(path)!r} is not a readable gzip file: {_first_line(exc)}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8 CSV or Parquet"
        ) from exc
    if header is None:
        raise DataError(f"data file {str(path)!r} has no header line")
    stripped = Counter(h.strip() for h in header)
    dupes = list(dict.fromkeys(h for h in header if stripped[h.strip()] > 1))
    if dupes:
        spaces = len(dupes) > len({h.strip() for h in dupes})
        raise DataError(f"data file {str(path)!r} has duplicate column names: {dupes}"
                        + ("; some differ only in spaces around them: rename them"
                           if spaces else ""))
    if "\x00" in "".join(header):
        raise DataError(f"data file {str(path)!r} looks binary, not CSV text")
    limit = max_input_bytes()
    if not compressed and path.stat().st_size > limit:
        raise _too_large(path, limit)
    try:
        if not compressed:
            return pd.read_csv(path, low_memory=False, encoding="utf-8",
                               encoding_errors="strict")
        with gzip.open(path, "rb") as raw:
            capped = io.BufferedReader(CappedReader(raw, limit, path), buffer_size=1 << 20)
            return pd.read_csv(capped, low_memory=False, encoding="utf-8",
                               encoding_errors="strict")
    except InputTooLarge as exc:
        raise _too_large(path, limit) from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "save it as UTF-8 CSV or Parquet"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file {str(path)!r} has no columns to read") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"data file {str(path)!r} is not a valid CSV: {_first_line(exc)}") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"data file {str(path)!r} could not be read (truncated or corrupt?): "
            f"{_first_line(exc)}"
        ) from exc


def max_input_bytes(env: dict | None = None) -> int:
    """The most bytes of CSV text one data file may hold once decompressed
    (``RAREFLOW_MAX_INPUT_BYTES``, default :data:`MAX_INPUT_BYTES`)."""
    text = (os.environ if env is None else env).get(MAX_INPUT_BYTES_ENV, "").strip()
    if not text:
        return MAX_INPUT_BYTES
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_INPUT_BYTES_ENV} must be a positive number of bytes such as "
                          f"{MAX_INPUT_BYTES}; got {text[:40]!r}")
    return value


class InputTooLarge(Exception):
    """Raised inside the CSV reader when a file's text passes the input cap."""


class CappedReader(io.RawIOBase):
    """A binary file that raises :class:`InputTooLarge` once more than ``limit`` bytes were
    read from it: a gzip bomb is stopped while it inflates, not after."""

    def __init__(self, raw, limit: int, path: Path):
        self.raw, self.limit, self.path, self.count = raw, limit, path, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise InputTooLarge(str(self.path))
        buffer[:len(data)] = data
        return len(data)


def _too_large(path: Path, limit: int) -> DataError:
    return DataError(f"data file {str(path)!r} holds more than {limit:,} bytes of CSV text "
                     f"(decompressed); convert it to Parquet or split it into partitions, or "
                     f"raise {MAX_INPUT_BYTES_ENV}")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _read_header(path: Path, compressed: bool) -> list[str] | None:
    opener = gzip.open if compressed else open
    with opener(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="")
        return next(csv.reader(text), None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def write_table(df: pd.DataFrame, path: str | Path) -> Path | str:
    """Write a DataFrame as Parquet (``.parquet``/``.pq``) or CSV (anything else, gzip for .gz).

    The file is written to a temporary name first and renamed, so a reader never sees a
    half-written table.

    Raises:
        DataError: the path is a directory, or a file stands where its folder should be.
    """
    if is_remote(path):  # written here, then uploaded whole
        from tasks.data.remote_files import upload

        with tempfile.TemporaryDirectory(prefix="rareflow-out-") as tmp:
            return upload(write_table(df, Path(tmp) / str(path).rsplit("/", 1)[-1]), str(path))
    path = Path(path)
    if path.is_dir():
        raise DataError(f"output path {str(path)!r} is a directory; give a file name such as "
                        f"{str(path / 'scored.parquet')!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise DataError(f"cannot create the folder of output {str(path)!r}: a file is in the "
                        "way; choose another output path") from exc
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if path.name.lower().endswith(PARQUET_SUFFIXES):
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False,
                      compression="gzip" if path.name.endswith(".gz") else None)
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if (full := storage_error(exc, path)) is not None:
            raise full from exc
        raise
    return path


load_task = task(load_table, name="load", cache_policy=NO_CACHE, **IO_RETRIES)
