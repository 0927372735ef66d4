"""A data source in object storage (``s3://bucket/prefix``), as `rareflow ingest` writes it.

The layout is the local one (:mod:`tasks.data.ingest`): the schema file at the root and
``date=YYYY-MM-DD/part-<sha256 prefix>.parquet`` partitions. Object storage has no rename, and
needs none: an object appears whole or not at all. Partitions are content-addressed and
created with put-if-absent (S3 ``If-None-Match: *``), so landing the same rows twice writes
nothing, and two first batches racing for the schema file cannot both write it.

Storage failures (unreachable endpoint, refused credentials, a missing bucket) are one-line
data errors naming the URL: the source is not the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import DataError
from tasks.data.source_files import SOURCE_FILE, arrow_schema
from tasks.runtime.object_store import open_store
from tasks.runtime.object_store_api import ObjectStore, StoreError


@contextlib.contextmanager
def as_data_error():
    """A storage failure of the source, as the data error it is (one line, exit 2)."""
    try:
        yield
    except StoreError as exc:
        raise DataError(str(exc)) from None


def source_store(source: str) -> ObjectStore:
    with as_data_error():
        return open_store(source)


def read_source_info(store: ObjectStore) -> dict | None:
    """The source's schema file (None: a new source).

    Raises:
        DataError: the prefix holds objects but no schema file (not a source `rareflow
            ingest` wrote), the file is unreadable, or the storage refuses.
    """
    with as_data_error():
        data = store.read(SOURCE_FILE)
        if data is None and store.list(""):
            raise DataError(f"source {store.url!r} holds objects but no {SOURCE_FILE}: "
                            "`rareflow ingest` lands batches in a new prefix or one it wrote")
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise DataError(f"{store.where(SOURCE_FILE)!r} is unreadable ({exc}); restore it or "
                        "land batches in a new prefix") from None


def write_schema_once(store: ObjectStore, info: bytes, arrow: pa.Schema) -> None:
    """Create the schema file unless it exists; one written meanwhile must be the same.

    Raises:
        DataError: another batch wrote a different schema first (nothing of this batch is
            written), or the storage refuses.
    """
    with as_data_error():
        if store.put_if_absent(SOURCE_FILE, info):
            return
    theirs = read_source_info(store)
    if theirs is None or not arrow_schema(theirs).equals(arrow):
        raise DataError(f"another batch created source {store.url!r} meanwhile with other "
                        "column types; nothing of this batch was written: land it again to "
                        "check it against that schema")


def put_partition(store: ObjectStore, table: pa.Table, folder: str) -> tuple[str, bool]:
    """Write one partition as one object named by its content; (its key, whether new)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    key = f"{folder}/part-{hashlib.sha256(data).hexdigest()[:16]}.parquet"
    with as_data_error():
        return key, store.put_if_absent(key, data)
