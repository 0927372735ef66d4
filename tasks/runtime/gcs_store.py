"""The Google Cloud Storage object store: generation preconditions (no lock anywhere).

``gs://BUCKET/PREFIX`` through google-cloud-storage's public client. An object's tag is its
generation: create only with ``ifGenerationMatch=0``, replace only that generation with
``ifGenerationMatch=<generation>``; GCS answers 412 Precondition Failed when the object
changed. One upload is one object generation: readers see the old bytes or the new ones.

Credentials are Google's standard chain (Application Default Credentials:
``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``, the workload's
service account on GCE/GKE/Cloud Run), as gcsfs, which reads data, uses it; ``project`` and
``endpoint_url`` from the storage options; ``STORAGE_EMULATOR_HOST`` points both at an
emulator (anonymous). Tested against fake-gcs-server (``tests/e2e``).
"""

from __future__ import annotations

import contextlib
import functools

from schemas.errors import ConfigError
from tasks.runtime.object_store_api import ObjectStore, StoreError, explain, missing_root

TIMEOUT = (5, 60)  # seconds to connect, to read
RETRY_FOR_S = 8.0  # retry transient failures this long (the library's default: 120 s)


@functools.cache
def _retry():
    """The library's default retry (transient errors, backoff), given up after
    ``RETRY_FOR_S``. As with botocore's retries on S3, a conditional upload whose answer was
    lost and which is retried reads 412 on its own write: it is reported as a lost race."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_FOR_S)


def client(options: dict):
    """A storage Client from the options (``project``, ``endpoint_url``, and gcsfs's
    ``token``: "anon" or a service account's key file, given through
    RAREFLOW_STORAGE_OPTIONS) and Google's chain.

    Raises:
        google.auth.exceptions.DefaultCredentialsError: no credentials found.
    """
    from google.cloud import storage

    extra = {"client_options": {"api_endpoint": options["endpoint_url"]}} \
        if options.get("endpoint_url") else {}
    token = options.get("token")
    if token == "anon":
        from google.auth.credentials import AnonymousCredentials

        extra["credentials"] = AnonymousCredentials()
    elif isinstance(token, str) and token:
        from google.oauth2 import service_account

        extra["credentials"] = service_account.Credentials.from_service_account_file(token)
    return storage.Client(project=options.get("project"), **extra)


def split_url(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    if not bucket:
        raise ConfigError(f"{url!r} names no bucket: use gs://BUCKET/PREFIX")
    return bucket, prefix.strip("/")


class GCSStore(ObjectStore):
    """Objects under ``gs://bucket/prefix``."""

    def __init__(self, url: str, options: dict):
        self.url = url.rstrip("/")
        bucket, self.prefix = split_url(url)
        from google.cloud.storage import Bucket

        try:
            Bucket(None, name=bucket)  # checks the name, before any credential is looked for
        except ValueError:
            raise ConfigError(f"{url!r}: {bucket!r} is not a valid GCS bucket name") from None
        try:
            self.client = client(options)
        except Exception as exc:  # google.auth's: no credentials, an unreadable key file
            raise explain(exc, self.url) from None
        self.bucket = self.client.bucket(bucket)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _run(self, fn, key: str):
        from google.api_core.exceptions import GoogleAPIError
        from google.auth.exceptions import GoogleAuthError
        from requests.exceptions import RequestException

        try:
            return fn(self.bucket.blob(self._key(key)))
        except (GoogleAPIError, GoogleAuthError, RequestException, ValueError) as exc:
            raise explain(exc, self.where(key)) from None

    def _no_bucket(self, key: str) -> StoreError:
        return StoreError(f"object storage {self.where(key)!r}: {missing_root(self.url)}")

    def _bucket_exists(self) -> bool:
        """Whether the bucket exists; True when asking is forbidden (object-level roles such
        as roles/storage.objectAdmin lack storage.buckets.get)."""
        from google.api_core.exceptions import Forbidden

        try:
            return self.bucket.exists(timeout=TIMEOUT, retry=_retry())
        except Forbidden:
            return True

    def read_tagged(self, key):
        from google.api_core.exceptions import NotFound

        def get(blob):
            try:
                data = blob.download_as_bytes(timeout=TIMEOUT, retry=_retry())
            except NotFound:
                if not self._bucket_exists():
                    raise self._no_bucket(key) from None
                return None
            return data, str(blob.generation)

        return self._run(get, key)

    def _put(self, key: str, data: bytes, generation: int | None) -> bool:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        def put(blob):
            try:
                blob.upload_from_string(data, if_generation_match=generation, timeout=TIMEOUT,
                                        retry=_retry())
            except PreconditionFailed:
                if generation is None:
                    raise
                return False
            except NotFound:
                raise self._no_bucket(key) from None
            return True

        return self._run(put, key)

    def write(self, key, data):
        self._put(key, data, None)

    def put_if_absent(self, key, data):
        return self._put(key, data, 0)

    def replace_if(self, key, data, tag):
        try:
            generation = 0 if tag is None else int(tag)
        except ValueError:
            raise StoreError(f"object storage {self.where(key)!r}: the object's tag {tag!r} is "
                             "not a GCS generation") from None
        return self._put(key, data, generation)

    def list(self, prefix=""):
        from google.api_core.exceptions import NotFound

        base = self._key("")

        def listing(_blob):
            try:
                return sorted(b.name[len(base):] for b in self.client.list_blobs(
                    self.bucket, prefix=self._key(prefix), timeout=TIMEOUT, retry=_retry()))
            except NotFound:
                raise self._no_bucket(prefix) from None

        return self._run(listing, prefix)

    def exists(self, key):
        return self._run(lambda blob: blob.exists(timeout=TIMEOUT, retry=_retry()), key)

    def copy(self, key, to):
        from google.api_core.exceptions import NotFound

        def copy(blob):  # server-side: the bytes do not pass through this process
            try:
                self.bucket.copy_blob(blob, self.bucket, self._key(to), timeout=TIMEOUT,
                                      retry=_retry())
            except NotFound:
                raise FileNotFoundError(self.where(key)) from None

        self._run(copy, key)

    def delete(self, key):
        from google.api_core.exceptions import NotFound

        def remove(blob):
            with contextlib.suppress(NotFound):
                blob.delete(timeout=TIMEOUT, retry=_retry())

        self._run(remove, key)


def probe(url: str, options: dict) -> None:
    """Ask for ``url``'s object once, with this module's short retries: an unreachable
    endpoint or refused credentials then fail in seconds (gcsfs, which reads data, retries for
    minutes first). Nothing is asked without credentials (gcsfs reads public data anonymously).

    Raises:
        google.api_core.exceptions.GoogleAPIError: what the service answered, or that it
            cannot be reached (RetryError).
    """
    from google.auth.exceptions import DefaultCredentialsError

    bucket, prefix = split_url(url)
    try:
        found = client(options).bucket(bucket)
    except DefaultCredentialsError:
        return
    (found.blob(prefix) if prefix else found).exists(timeout=TIMEOUT, retry=_retry())
