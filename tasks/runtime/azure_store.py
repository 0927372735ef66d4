"""The Azure Blob Storage object store: conditional writes on the blob's ETag (no lock anywhere).

``az://CONTAINER/PREFIX`` (or ``abfs://``/``abfss://``, also ``CONTAINER@ACCOUNT.dfs.core.
windows.net``) through azure-storage-blob's public client: create only with ``If-None-Match: *``
(``upload_blob(overwrite=False)``), replace only that version with ``If-Match: <etag>``
(``etag=..., match_condition=IfNotModified``); Azure answers 409 BlobAlreadyExists or 412
ConditionNotMet when the precondition fails. One ``upload_blob`` is one Put Blob (or one Put
Block List commit for a large one): readers see the old blob or the new one.

Credentials follow the names adlfs reads, so data at an ``az://`` URL and a registry there use
the same ones: the storage options' or environment's ``connection_string``
(``AZURE_STORAGE_CONNECTION_STRING``), else the account name (the URL's ``@ACCOUNT``,
``account_name`` or ``AZURE_STORAGE_ACCOUNT_NAME``) with ``account_key``
(``AZURE_STORAGE_ACCOUNT_KEY``) or ``sas_token`` (``AZURE_STORAGE_SAS_TOKEN``), else
azure-identity's ``DefaultAzureCredential`` (a managed identity, the Azure CLI's login...).
Tested against Azurite, Microsoft's storage emulator (``tests/e2e``).
"""

from __future__ import annotations

import contextlib
import os

from schemas.errors import ConfigError
from tasks.runtime.object_store_api import ObjectStore, explain

# fail fast on an unreachable endpoint: five seconds to connect, two retries one second apart
# (the SDK's default waits 15 s, then 18 s more, before it gives up)
CLIENT_OPTIONS = {"connection_timeout": 5, "read_timeout": 60}
RETRIES = {"backoff": 1, "retry_total": 2}
PRECONDITION_CODES = ("BlobAlreadyExists", "ConditionNotMet", "409", "412")


def _setting(options: dict, name: str) -> str | None:
    return options.get(name) or os.environ.get(f"AZURE_STORAGE_{name.upper()}") or None


def split_url(url: str) -> tuple[str, str | None, str]:
    """(container, the account's host or None, prefix) of an ``az://`` / ``abfs://`` URL."""
    netloc, _, prefix = url.split("://", 1)[1].partition("/")
    container, _, host = netloc.partition("@")
    if not container:
        raise ConfigError(f"{url!r} names no container: use az://CONTAINER/PREFIX")
    return container, host or None, prefix.strip("/")


def account_url(url: str, options: dict) -> str | None:
    """The blob endpoint: the URL's ``@ACCOUNT.dfs.<cloud suffix>`` (its blob twin, so a
    sovereign cloud's suffix is kept), else adlfs's ``account_host``, else the account name
    on the public cloud; None when no account is named."""
    host = split_url(url)[1]
    if host and "." in host:
        return "https://" + host.replace(".dfs.", ".blob.", 1)
    if options.get("account_host"):
        return f"https://{options['account_host']}"
    account = host or _setting(options, "account_name")
    return f"https://{account}.blob.core.windows.net" if account else None


def service_client(url: str, options: dict):
    """A BlobServiceClient from the options and the environment (see the module docstring).

    Raises:
        ConfigError: no account to connect to, or azure-identity missing for a credential-less
            account (names the setting; never a secret).
    """
    from azure.storage.blob import BlobServiceClient, LinearRetry

    client_options = {**CLIENT_OPTIONS, "retry_policy": LinearRetry(**RETRIES)}
    connection = _setting(options, "connection_string")
    if connection:
        try:
            return BlobServiceClient.from_connection_string(connection, **client_options)
        except ValueError:
            raise ConfigError(f"{url!r}: the Azure connection string (connection_string or "
                              "AZURE_STORAGE_CONNECTION_STRING) is malformed (not shown): "
                              "copy it again from the storage account's access keys") from None
    endpoint = account_url(url, options)
    if not endpoint:
        raise ConfigError(f"{url!r}: no Azure storage account: set "
                          "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME, or "
                          "write the URL as az://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX")
    key = _setting(options, "account_key")
    name = _setting(options, "account_name") or endpoint.split("//", 1)[1].split(".", 1)[0]
    credential = {"account_name": name, "account_key": key} if key else \
        _setting(options, "sas_token")
    if credential is None:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise ConfigError(f"{url!r}: no account key or SAS token (AZURE_STORAGE_ACCOUNT_KEY"
                              ", AZURE_STORAGE_SAS_TOKEN): set one, or install azure-identity "
                              "to use a managed identity or the Azure CLI's login") from None
        credential = DefaultAzureCredential()
    return BlobServiceClient(endpoint, credential=credential, **client_options)


def _code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or getattr(exc, "status_code", "") or "")


class AzureStore(ObjectStore):
    """Blobs under ``az://container/prefix``."""

    def __init__(self, url: str, options: dict):
        self.url = url.rstrip("/")
        container, _, self.prefix = split_url(url)
        self.container = service_client(url, options).get_container_client(container)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _run(self, fn, key: str):
        from azure.core.exceptions import AzureError

        try:
            return fn(self.container.get_blob_client(self._key(key)))
        except (AzureError, ValueError) as exc:
            raise explain(exc, self.where(key)) from None

    def read_tagged(self, key):
        from azure.core.exceptions import ResourceNotFoundError

        def get(blob):
            try:
                download = blob.download_blob()
            except ResourceNotFoundError as exc:
                if _code(exc) == "BlobNotFound":
                    return None
                raise
            return download.readall(), download.properties.etag

        return self._run(get, key)

    def _put(self, key: str, data: bytes, **condition) -> bool:
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        def put(blob):
            try:
                blob.upload_blob(data, **{"overwrite": True, **condition})
            except (ResourceExistsError, ResourceModifiedError) as exc:
                if _code(exc) in PRECONDITION_CODES:
                    return False
                raise
            return True

        return self._run(put, key)

    def write(self, key, data):
        self._put(key, data)

    def put_if_absent(self, key, data):
        return self._put(key, data, overwrite=False)

    def replace_if(self, key, data, tag):
        if tag is None:
            return self.put_if_absent(key, data)
        from azure.core import MatchConditions

        return self._put(key, data, etag=tag, match_condition=MatchConditions.IfNotModified)

    def list(self, prefix=""):
        from azure.core.exceptions import AzureError

        base = self._key("")
        try:
            return sorted(b.name[len(base):] for b in
                          self.container.list_blobs(name_starts_with=self._key(prefix)))
        except AzureError as exc:
            raise explain(exc, self.where(prefix)) from None

    def exists(self, key):
        return self._run(lambda blob: blob.exists(), key)

    def delete(self, key):
        from azure.core.exceptions import ResourceNotFoundError

        def remove(blob):
            with contextlib.suppress(ResourceNotFoundError):
                blob.delete_blob()

        self._run(remove, key)


def probe(url: str, options: dict) -> None:
    """Ask for ``url``'s blob once, with this module's short retries, when a key or a
    connection string is configured: an unreachable endpoint or a refused key then fails in
    seconds (adlfs, which reads data, retries for about a minute and a half first).

    Raises:
        azure.core.exceptions.AzureError: what the service answered, or that it cannot be
            reached.
    """
    if not any(_setting(options, name) for name in ("connection_string", "account_key",
                                                    "sas_token")):
        return
    container, _, prefix = split_url(url)
    client = service_client(url, options).get_container_client(container)
    (client.get_blob_client(prefix) if prefix else client).exists()
