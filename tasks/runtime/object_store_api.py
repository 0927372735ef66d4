"""The object store's interface and its errors: what every store (a local folder, S3) offers,
and how a storage failure is said in one line (no credential in it).

:class:`ObjectStore` is whole-object reads and writes, listing, put-if-absent and
compare-and-swap on a tag (an S3 ETag; a content digest on local disk), and delete. The stores
themselves: :mod:`tasks.runtime.object_store` (local disk, and opening a store for a location)
``tasks/runtime/_s3_store.py`` (S3 conditional writes), ``tasks/runtime/azure_store.py``
(Azure Blob Storage's) and ``tasks/runtime/gcs_store.py`` (GCS generation preconditions).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import typing
from abc import ABC, abstractmethod
from contextvars import ContextVar
from pathlib import Path

from schemas.errors import ConfigError, RegistryError
from schemas.yaml_files import merge

STORAGE_OPTIONS_ENV = "RAREFLOW_STORAGE_OPTIONS"
LOCAL_SCHEMES = ("file://", "local://")
# an S3 client fails fast on an unreachable endpoint: two attempts, five seconds to connect
S3_CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 60,
                    "retries": {"max_attempts": 2, "mode": "standard"}}


def is_remote(location) -> bool:
    """Whether ``location`` is a URL of an fsspec filesystem other than the local disk."""
    text = str(location)
    return "://" in text and not text.startswith(LOCAL_SCHEMES)


def local_path(location) -> Path:
    """A local path, from a path or a ``file://`` URL."""
    text = str(location)
    for scheme in LOCAL_SCHEMES:
        if text.startswith(scheme):
            return Path(text[len(scheme):])
    return Path(text)


# the running flow's config `storage_options` (schemas/storage.py), under the environment's
_CONFIGURED: ContextVar[dict | None] = ContextVar("rareflow_storage_options", default=None)


@contextlib.contextmanager
def configured_storage(options: dict | None):
    """Within it, :func:`storage_options` starts from ``options`` (a config's)."""
    token = _CONFIGURED.set(dict(options or {}))
    try:
        yield
    finally:
        _CONFIGURED.reset(token)


def with_config_storage(flow_fn):
    """A flow function whose first parameter is a config: run it within that config's
    ``storage_options`` (put under ``@flow``; the signature Prefect reads is kept)."""

    @functools.wraps(flow_fn)
    def run(config, *args, **kwargs):
        with configured_storage(config.storage_options):
            return flow_fn(config, *args, **kwargs)

    # Prefect validates parameters against the annotations in the *wrapper's* module: give it
    # them resolved (the flow modules use `from __future__ import annotations`)
    run.__annotations__ = typing.get_type_hints(flow_fn)
    run.__signature__ = inspect.signature(flow_fn, eval_str=True)
    return run


def storage_options(env=None) -> dict:
    """fsspec options: the running config's ``storage_options``, updated by those of
    ``RAREFLOW_STORAGE_OPTIONS`` (a JSON object; never echoed)."""
    text = (os.environ if env is None else env).get(STORAGE_OPTIONS_ENV, "").strip()
    if not text:
        return dict(_CONFIGURED.get() or {})
    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise ConfigError(f"{STORAGE_OPTIONS_ENV} must be a JSON object of fsspec options "
                          "such as {\"anon\": false}; its value was not (not shown)")
    return merge(_CONFIGURED.get() or {}, options)


DENIED_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AuthenticationFailed",
                "AuthorizationFailure", "AuthorizationPermissionMismatch", "401")
MISSING_ROOT_CODES = ("NoSuchBucket", "ContainerNotFound")
UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
               "ConnectionClosedError", "ServerDisconnectedError", "ReadTimeoutError",
               "ServiceRequestError", "ServiceRequestTimeoutError", "RetryError",
               "ConnectionError", "ConnectTimeout")
# each cloud rareflow keeps a registry on: its URL schemes, its store (module, class: all but
# S3's have a `probe` run before fsspec reads data) and the module of its client
CLOUDS = {
    "s3": {"schemes": ("s3", "s3a"), "store": ("tasks.runtime._s3_store", "S3Store"),
           "client": "s3fs"},
    "azure": {"schemes": ("az", "abfs", "abfss"),
              "store": ("tasks.runtime.azure_store", "AzureStore"),
              "client": "azure.storage.blob"},
    "gcs": {"schemes": ("gs", "gcs"), "store": ("tasks.runtime.gcs_store", "GCSStore"),
            "client": "google.cloud.storage"},
}
# what each cloud's credentials and endpoint are called, for the messages (no value, ever)
HINTS = {
    "s3": {"credentials": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the "
                          "instance role",
           "endpoint": "AWS_ENDPOINT_URL (or the storage options' endpoint)", "root": "bucket"},
    "azure": {"credentials": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME "
                             "with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN, or "
                             "the managed identity",
              "endpoint": "the account's blob endpoint (BlobEndpoint in the connection "
                          "string)", "root": "container"},
    "gcs": {"credentials": "GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default "
                           "login` or the workload's service account",
            "endpoint": "STORAGE_EMULATOR_HOST (or the storage options' endpoint_url)",
            "root": "bucket"},
}


class StoreError(RegistryError):
    """Object storage refused or could not be reached (one line; no credentials in it)."""


def error_codes(exc: BaseException) -> tuple[set[str], set[str]]:
    """The storage error codes (S3's, Azure's, GCS's HTTP status) and exception class names
    along an exception's chain."""
    codes, names, seen = set(), set(), 0
    while exc is not None and seen < 8:
        names.add(type(exc).__name__)
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            codes.add(str(error.get("Code", "")))
            codes.add(str((response.get("ResponseMetadata") or {}).get("HTTPStatusCode", "")))
        code = getattr(exc, "error_code", None)  # azure-core's HttpResponseError
        codes.add(str(getattr(code, "value", code) or ""))
        codes.add(str(getattr(exc, "status_code", "") or ""))
        if isinstance(getattr(exc, "code", None), int):  # google-api-core's HTTP status
            codes.add(str(exc.code))
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return codes - {"", "None"}, names


def cloud_of(url: str | None) -> str | None:
    """The cloud of a URL ("s3", "azure", "gcs": a key of ``CLOUDS``), None for another."""
    scheme = str(url or "").split("://", 1)[0].lower()
    return next((cloud for cloud, about in CLOUDS.items() if scheme in about["schemes"]), None)


def install_hint(cloud: str) -> str:
    """How to install a cloud's client: its extra is named as the cloud."""
    return f"the {cloud} extra (`uv sync --extra {cloud}` or `pip install 'rareflow[{cloud}]'`)"


def missing_root(url: str | None) -> str:
    """What to say when the bucket (container) of ``url`` does not exist."""
    return f"the {HINTS[cloud_of(url) or 's3']['root']} does not exist: create it or fix the URL"


def storage_problem(exc: BaseException, url: str | None = None) -> str:
    """What went wrong talking to object storage at ``url`` and what to do, in a few words
    (never a credential, never the endpoint's answer verbatim: it may echo an access key id
    or a SAS token)."""
    hints = HINTS[cloud_of(url) or "s3"]
    codes, names = error_codes(exc)
    if codes & set(MISSING_ROOT_CODES):
        return missing_root(url)
    # azure-identity's credentials raise ClientAuthenticationError without an HTTP status when
    # none of them finds a token; the service's refusals carry one (401, 403)
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialUnavailableError",
                "DefaultCredentialsError"} or ("ClientAuthenticationError" in names
                                               and not codes):
        return f"no credentials found: set {hints['credentials']}"
    if "RefreshError" in names:  # google-auth: a user login expired or was revoked
        return ("the credentials could not be refreshed (an expired or revoked login): sign "
                f"in again or set {hints['credentials']}")
    if codes & set(DENIED_CODES) or "ClientAuthenticationError" in names:
        return (f"access denied: check the credentials ({hints['credentials']}) and their "
                "permission on this prefix")
    if names & set(UNREACHABLE) or isinstance(exc, (ConnectionError, TimeoutError)):
        return f"the endpoint cannot be reached: check {hints['endpoint']} and the network"
    return f"the storage answered {sorted(codes) or type(exc).__name__}"


def explain(exc: BaseException, where: str) -> StoreError:
    """A one-line registry error naming the URL and what to do."""
    return StoreError(f"object storage {where!r}: {storage_problem(exc, where)}")


class ObjectStore(ABC):
    """Whole objects under one root, by relative key (``a/b/c.json``)."""

    url: str  # where the store is, for messages (no credentials)

    @abstractmethod
    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and its tag (None: no such object)."""

    def read(self, key: str) -> bytes | None:
        found = self.read_tagged(key)
        return None if found is None else found[0]

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Write an object whole: readers see the old or the new bytes."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object; False (nothing written) when it exists."""

    @abstractmethod
    def replace_if(self, key: str, data: bytes, tag: str | None) -> bool:
        """Replace the object only while its tag is ``tag`` (None: only while it does not
        exist); False (nothing written) when it changed."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (recursively), sorted."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    def copy(self, key: str, to: str) -> None:
        """Copy an object whole to ``to`` (readers see its old or its new bytes).

        Raises:
            FileNotFoundError: no object ``key``.
        """
        data = self.read(key)
        if data is None:
            raise FileNotFoundError(self.where(key))
        self.write(to, data)

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (no error when it is missing)."""

    def where(self, key: str = "") -> str:
        return f"{self.url.rstrip('/')}/{key}" if key else self.url
