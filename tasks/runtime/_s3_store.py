"""The S3 object store: s3fs's client with S3 conditional writes (no lock anywhere).

Library internals, kept here: the calls go through s3fs's coroutine ``S3FileSystem._call_s3``
(its public ``call_s3`` wraps it, but a ``get_object`` body must be read inside the same event
loop, so the ETag and the bytes come from one response). Compare-and-swap is botocore's
``put_object(..., IfNoneMatch="*")`` (create only) and ``put_object(..., IfMatch=etag)``
(replace only that version); S3 answers 412 PreconditionFailed (or 409
ConditionalRequestConflict during a concurrent write) when the precondition fails. Listing is
``list_objects_v2`` page by page, never s3fs's listing cache (another process's writes must be
seen).

Relies on: ``S3FileSystem._call_s3(method, **kwargs)`` being a coroutine that calls the botocore
client method by name; botocore's ``PutObject`` taking ``IfMatch`` and ``IfNoneMatch``; s3fs
keeping the botocore error (its code) as the ``__cause__`` of the OSError it raises. Checked
against ``CHECKED_AGAINST`` and moto 5.2's server (which implements both preconditions); the
upgrade test is in ``tests/unit/test_library_internals.py``, the behaviour on a real S3 API in
``tests/e2e/test_object_registry.py``.

Azure's and GCS's stores are ``tasks/runtime/azure_store.py`` and ``gcs_store.py`` (public
clients only); other fsspec filesystems read and write data through fsspec, and a registry
there is refused (``open_remote`` in ``tasks/runtime/object_store.py``).
"""

from __future__ import annotations

import contextlib
import logging

from schemas.errors import ConfigError
from tasks.runtime.object_store_api import S3_CLIENT_CONFIG, ObjectStore, error_codes, explain

logger = logging.getLogger(__name__)

CHECKED_AGAINST = {"s3fs": "2026.9", "botocore": "1.43"}

PRECONDITION_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def precondition_failed(exc: BaseException) -> bool:
    return bool(error_codes(exc)[0] & set(PRECONDITION_CODES))


class S3Store(ObjectStore):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(self, url: str, options: dict):
        import s3fs  # the `s3` extra: imported only when an s3:// URL is used

        options = dict(options)
        options.setdefault("config_kwargs", S3_CLIENT_CONFIG)
        self.fs = s3fs.S3FileSystem(**options)
        self.url = url if url.endswith("://") else url.rstrip("/")
        self.bucket, _, self.prefix = self.url.split("://", 1)[1].partition("/")
        if not self.bucket:
            raise ConfigError(f"{url!r} names no bucket: use s3://BUCKET/PREFIX")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _run(self, coro_fn, key: str):
        from fsspec.asyn import sync

        try:
            return sync(self.fs.loop, coro_fn)
        except FileNotFoundError as exc:
            if "NoSuchBucket" in error_codes(exc)[0] or "bucket" in str(exc).lower():
                raise explain(exc, self.where(key)) from None
            raise
        except (OSError, RuntimeError, ValueError) as exc:
            if precondition_failed(exc):
                raise
            raise explain(exc, self.where(key)) from None
        except Exception as exc:  # botocore's own (credentials, endpoint)
            raise explain(exc, self.where(key)) from None

    def read_tagged(self, key):
        async def get():
            try:
                response = await self.fs._call_s3("get_object", Bucket=self.bucket,
                                                  Key=self._key(key))
            except FileNotFoundError as exc:
                if "NoSuchBucket" in error_codes(exc)[0]:
                    raise
                return None
            async with response["Body"] as body:
                return await body.read(), response["ETag"]

        return self._run(get, key)

    def _put(self, key: str, data: bytes, **condition) -> bool:
        async def put():
            try:
                await self.fs._call_s3("put_object", Bucket=self.bucket, Key=self._key(key),
                                       Body=data, **condition)
            except (OSError, ValueError) as exc:
                if condition and precondition_failed(exc):
                    return False
                raise
            return True

        return self._run(put, key)

    def write(self, key, data):
        self._put(key, data)

    def put_if_absent(self, key, data):
        return self._put(key, data, IfNoneMatch="*")

    def replace_if(self, key, data, tag):
        return self._put(key, data, **({"IfMatch": tag} if tag else {"IfNoneMatch": "*"}))

    def list(self, prefix=""):
        async def listing():
            keys, token, base = [], None, self._key("")
            while True:
                extra = {"ContinuationToken": token} if token else {}
                page = await self.fs._call_s3("list_objects_v2", Bucket=self.bucket,
                                              Prefix=self._key(prefix), **extra)
                keys += [o["Key"][len(base):] for o in page.get("Contents", [])]
                if not page.get("IsTruncated"):
                    return sorted(keys)
                token = page["NextContinuationToken"]

        return self._run(listing, prefix)

    def exists(self, key):
        async def head():
            try:
                await self.fs._call_s3("head_object", Bucket=self.bucket, Key=self._key(key))
            except FileNotFoundError:
                return False
            return True

        return self._run(head, key)

    def copy(self, key, to):
        async def copy():  # server-side: the bytes do not pass through this process
            await self.fs._call_s3("copy_object", Bucket=self.bucket, Key=self._key(to),
                                   CopySource={"Bucket": self.bucket, "Key": self._key(key)})

        self._run(copy, key)

    def delete(self, key):
        async def remove():
            with contextlib.suppress(FileNotFoundError):
                await self.fs._call_s3("delete_object", Bucket=self.bucket, Key=self._key(key))

        self._run(remove, key)
