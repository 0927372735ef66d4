"""The files of a data source and their schema: one file, a folder of partitions (hive-style
``key=value/`` folders too) or a glob, in CSV, CSV.gz or Parquet.

Files are listed in the order of their paths; names starting with '.' or '_' are not data
(temporary files of writers, the source's schema file), as in pyarrow's dataset discovery.
"""

from __future__ import annotations

import base64
import glob as globlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import DataError
from tasks.data.labels import utc
from tasks.data.tables import PARQUET_SUFFIXES
from tasks.runtime.object_store_api import is_remote

SOURCE_FILE = "_rareflow_source.json"  # the source's schema, written by `rareflow ingest`
DATE_KEYS = ("date", "dt")  # hive keys that date a partition (without a time column)
DATA_SUFFIXES = (*PARQUET_SUFFIXES, ".csv", ".csv.gz")
GLOB_CHARS = frozenset("*?[")


# -- which files ------------------------------------------------------------------------------
@dataclass
class SourceFiles:
    """The data files of a source, in path order, and the folder their names are relative to."""

    spec: str
    root: Path
    files: list[Path]
    kind: str  # "file", "directory" or "glob"
    fetch: Callable[[Path], None] | None = None  # a remote folder's: copies a file when read
    urls: dict[Path, str] = field(default_factory=dict)  # a remote folder's: each file's URL
    tags: dict[Path, str] = field(default_factory=dict)  # ... and its ETag (or size) listed
    remote_footer: Callable[[Path], object] | None = None  # ... its Parquet footer, read alone

    def local(self, path: Path) -> Path:
        """``path``, on local disk: a listed remote file is fetched the first time."""
        if self.fetch is not None:
            self.fetch(path)
        return path

    def footer(self, path: Path):
        """A Parquet file's metadata; a remote file's footer is read by range requests, without
        fetching the file (pyarrow's and the storage's errors are left to the caller)."""
        if self.remote_footer is not None and path in self.urls:
            return self.remote_footer(path)
        return pq.read_metadata(self.local(path))

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def _is_data_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(DATA_SUFFIXES)


def _hidden(parts) -> bool:
    """Names starting with '.' or '_' are not data (temporary files, the schema file), as in
    pyarrow's dataset discovery."""
    return any(part.startswith((".", "_")) for part in parts)


def _data_files(folder: Path, root: Path) -> list[Path]:
    found = [p for p in folder.rglob("*")
             if _is_data_file(p) and not _hidden(p.relative_to(root).parts)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next(i for i, p in enumerate(parts)
                                   if GLOB_CHARS & set(p))]]
    return Path(*fixed) if fixed else Path(".")


def _remote_source(url: str) -> SourceFiles:
    from tasks.data.remote_files import fetch_source, list_source

    def keep(rel: str) -> bool:
        return rel.lower().endswith(DATA_SUFFIXES) and not _hidden(Path(rel).parts)

    listed = None if GLOB_CHARS & set(url) else list_source(url, keep, SOURCE_FILE.__eq__)
    if listed is None:  # a file or a glob: fetched now
        files = resolve_source(fetch_source(url))
        return SourceFiles(url, files.root, files.files, files.kind)
    root, wanted, fetch, tags, footer = listed
    if not wanted:
        raise DataError(f"data source {url!r} holds no CSV or Parquet file (names ending in "
                        f"{', '.join(DATA_SUFFIXES)}); ingest a batch with `rareflow ingest` "
                        "or point --data at a file")
    files = sorted(wanted, key=lambda p: p.relative_to(root).as_posix())
    return SourceFiles(url, root, files, "directory", fetch, wanted, tags, footer)


def resolve_source(data: str) -> SourceFiles:
    """The files of ``data``: a file, a folder (searched recursively) or a glob.

    Raises:
        DataError: nothing exists there, or it holds no CSV or Parquet file.
    """
    text = str(data)
    if is_remote(text):  # s3://... : named by its URL; a folder's files fetched when read
        return _remote_source(text)
    path = Path(text)
    if GLOB_CHARS & set(text) and not path.exists():
        root = _glob_root(text)
        files: list[Path] = []
        for match in sorted(Path(p) for p in globlib.glob(text, recursive=True)):
            files += _data_files(match, root) if match.is_dir() else [match]
        files = sorted({f for f in files if _is_data_file(f)
                        and not _hidden(f.relative_to(root).parts)},
                       key=lambda p: p.relative_to(root).as_posix())
        kind = "glob"
    elif not path.exists():
        raise DataError(f"data path {text!r} does not exist")
    elif path.is_dir():
        root, files, kind = path, _data_files(path, path), "directory"
    else:
        root, files, kind = path.parent, [path], "file"
    if not files:
        raise DataError(f"data source {text!r} holds no CSV or Parquet file (names ending in "
                        f"{', '.join(DATA_SUFFIXES)}); ingest a batch with `rareflow ingest` "
                        "or point --data at a file")
    return SourceFiles(text, root, files, kind)


def source_path(data: str) -> str:
    """A source as events carry it: an absolute path (a glob or a URL stays as given)."""
    return data if GLOB_CHARS & set(data) or is_remote(data) else str(Path(data).resolve())


def hive_keys(rel: str) -> dict[str, str]:
    """The ``key=value`` folders of a relative path: ``date=2026-11-28/p.parquet`` → date."""
    return dict(part.split("=", 1) for part in rel.split("/")[:-1] if "=" in part)


def partition_date_key(files: SourceFiles, info: dict | None = None) -> str | None:
    """The hive key that dates a source's partitions (``date=1997-07-01/``): the key
    ``rareflow ingest`` recorded for the source, else ``date`` or ``dt``; None when no
    partition is dated (a plain file, or folders without such a key)."""
    if files.kind == "file":
        return None
    keys = set().union(*(hive_keys(files.rel(path)) for path in files.files))
    for key in ((info or {}).get("partition_key"), *DATE_KEYS):
        if key and key in keys:
            return key
    return None


def source_info(root: Path) -> dict | None:
    """What ``rareflow ingest`` recorded about a source folder (schema, time column), if any."""
    path = Path(root) / SOURCE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"source file {str(path)!r} is unreadable ({exc}); restore it or "
                        "delete it (the partitions' own schema is then used)") from exc


def arrow_schema(info: dict) -> pa.Schema:
    """The exact Arrow schema a source's schema file records."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(info["arrow_schema"])))


def signature(schema: pa.Schema) -> dict[str, str]:
    return {f.name: str(f.type) for f in schema if not f.name.startswith("__index_level")}


def schema_problem(reference: dict[str, str], got: dict[str, str]) -> str | None:
    """How a partition's columns differ from the source's (None if they do not).

    A column whose type is ``null`` (every value missing) matches any type.
    """
    problems = [f"no column {n!r}" for n in reference if n not in got]
    problems += [f"an extra column {n!r}" for n in got if n not in reference]
    problems += [f"column {n!r} is {got[n]}, not {reference[n]}" for n in reference
                 if n in got and got[n] != reference[n] and "null" not in (got[n], reference[n])]
    return "; ".join(problems[:4]) or None


def is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def parquet_time_bounds(meta, index: int) -> tuple | None:
    """The earliest and latest time of a Parquet file's column from its footer statistics."""
    lo = hi = None
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(index).statistics
        if stats is None or not stats.has_min_max or not isinstance(stats.min, datetime):
            return None
        lo = utc(stats.min) if lo is None else min(lo, utc(stats.min))
        hi = utc(stats.max) if hi is None else max(hi, utc(stats.max))
    return None if lo is None else (lo, hi)
