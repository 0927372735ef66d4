"""Durable file writes and JSON: what the registry, reports and partitions are written with."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable (a no-op on Windows, which
    cannot open a directory and journals NTFS entries itself)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a partial one (an
    object of a store, :class:`tasks.runtime.object_store.StorePath`, is written whole)."""
    if hasattr(path, "store"):
        path.write_bytes(data)
        return
    # not mkstemp: its 0600 would ignore the umask, and a reader account could not read the
    # file (os.open's mode is filtered by the umask, as every other file rareflow writes)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def json_default(value):
    """JSON for NumPy scalars and arrays and paths (``json.dumps(default=...)``)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(data, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """``json.dumps`` that also takes NumPy values and paths."""
    return json.dumps(data, indent=indent, sort_keys=sort_keys, default=json_default)


def write_json(path: Path, data, *, sort_keys: bool = True) -> None:
    """Write ``data`` as indented JSON and fsync it (the file is new: no one reads it yet)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(dumps(data, sort_keys=sort_keys))
        fh.flush()
        os.fsync(fh.fileno())
