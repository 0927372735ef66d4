"""Where durable bytes live: a local folder or an fsspec URL (``s3://bucket/prefix``), behind
one small interface the registry writes through.

:class:`ObjectStore` is whole-object reads and writes, listing, put-if-absent and
compare-and-swap on a tag (an S3 ETag; a content digest on local disk), and delete.
:class:`LocalStore` keeps files (atomic rename, fsync; its compare-and-swap holds a file lock);
the S3 store (``tasks/runtime/_s3_store.py``) uses S3 conditional writes and needs no lock.
:class:`StorePath` lets code written for ``pathlib.Path`` (``/``, ``is_file``,
``read_bytes``...) read and write a store's objects.

Credentials and the endpoint come from the cloud's standard chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, a profile, an instance role); ``RAREFLOW_STORAGE_OPTIONS`` (JSON)
passes anything else to fsspec. Neither is ever written to a message or a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path

from schemas.errors import ConfigError, RegistryError
from tasks.runtime.durable_files import fsync_dir, write_bytes_atomic

STORAGE_OPTIONS_ENV = "RAREFLOW_STORAGE_OPTIONS"
LOCAL_SCHEMES = ("file://", "local://")


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


def storage_options(env=None) -> dict:
    """fsspec options from ``RAREFLOW_STORAGE_OPTIONS`` (a JSON object; never echoed)."""
    text = (os.environ if env is None else env).get(STORAGE_OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise ConfigError(f"{STORAGE_OPTIONS_ENV} must be a JSON object of fsspec options "
                          "such as {\"anon\": false}; its value was not (not shown)")
    return options


DENIED_CODES = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
                "ExpiredToken", "InvalidToken", "AllAccessDisabled")
UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
               "ConnectionClosedError", "ServerDisconnectedError", "ReadTimeoutError")


class StoreError(RegistryError):
    """Object storage refused or could not be reached (one line; no credentials in it)."""


def error_codes(exc: BaseException) -> tuple[set[str], set[str]]:
    """The S3 error codes and exception class names along an exception's chain."""
    codes, names, seen = set(), set(), 0
    while exc is not None and seen < 8:
        names.add(type(exc).__name__)
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            codes.add(str(error.get("Code", "")))
            codes.add(str((response.get("ResponseMetadata") or {}).get("HTTPStatusCode", "")))
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return codes, names


def storage_problem(exc: BaseException) -> str:
    """What went wrong talking to object storage and what to do, in a few words (never a
    credential, never the endpoint's answer verbatim: it may echo an access key id)."""
    codes, names = error_codes(exc)
    if codes & {"NoSuchBucket"}:
        return "the bucket does not exist: create it or fix the URL"
    if codes & set(DENIED_CODES):
        return ("access denied: check the credentials (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance role) and their permission "
                "on this prefix")
    if names & {"NoCredentialsError", "PartialCredentialsError"}:
        return ("no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or run with an instance role")
    if names & set(UNREACHABLE) or isinstance(exc, (ConnectionError, TimeoutError)):
        return ("the endpoint cannot be reached: check AWS_ENDPOINT_URL (or the storage "
                "options' endpoint) and the network")
    return f"the storage answered {sorted(c for c in codes if c) or type(exc).__name__}"


def explain(exc: BaseException, where: str) -> StoreError:
    """A one-line registry error naming the URL and what to do."""
    return StoreError(f"object storage {where!r}: {storage_problem(exc)}")


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

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (no error when it is missing)."""

    def where(self, key: str = "") -> str:
        return f"{self.url.rstrip('/')}/{key}" if key else self.url


def _internal(name: str) -> bool:
    """The local store's own files (locks, temporaries): not objects."""
    return name.startswith(".") and name.endswith((".lock", ".tmp"))


class LocalStore(ObjectStore):
    """Files under a folder: atomic writes with fsync; compare-and-swap under a file lock."""

    def __init__(self, root):
        self.root = local_path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def read_tagged(self, key):
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return data, hashlib.sha256(data).hexdigest()

    def write(self, key, data):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)

    def put_if_absent(self, key, data):
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp"
        write_bytes_atomic(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)
        return True

    def replace_if(self, key, data, tag):
        from filelock import FileLock

        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.parent / f".{path.name}.lock"):
            current = self.read_tagged(key)
            if (current[1] if current else None) != tag:
                return False
            write_bytes_atomic(path, data)
        return True

    def list(self, prefix=""):
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*")
                      if p.is_file() and not _internal(p.name))

    def exists(self, key):
        return self._path(key).is_file()

    def delete(self, key):
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()


def open_store(location, options: dict | None = None) -> ObjectStore:
    """The store at ``location``: a local folder (or ``file://``), else an fsspec URL.

    Raises:
        ConfigError: the URL's filesystem is not installed (names the extra to install).
    """
    if not is_remote(location):
        return LocalStore(location)
    from tasks.runtime._s3_store import open_remote

    return open_remote(str(location), {**storage_options(), **(options or {})})


class StorePath:
    """An object of a store, with the part of ``pathlib.Path`` rareflow's readers use."""

    def __init__(self, store: ObjectStore, key: str = ""):
        self.store, self.key = store, key.strip("/")

    def __truediv__(self, name) -> StorePath:
        return StorePath(self.store, f"{self.key}/{name}" if self.key else str(name))

    def __str__(self) -> str:
        return self.store.where(self.key)

    def __repr__(self) -> str:
        return f"StorePath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StorePath) and (other.store, other.key) == (self.store,
                                                                            self.key)

    def __hash__(self) -> int:
        return hash((id(self.store), self.key))

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> StorePath:
        return StorePath(self.store, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def is_file(self) -> bool:
        return self.store.exists(self.key)

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def is_dir(self) -> bool:
        return bool(self.store.list(self.key + "/" if self.key else ""))

    def read_bytes(self) -> bytes:
        data = self.store.read(self.key)
        if data is None:
            raise FileNotFoundError(str(self))
        return data

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        self.store.write(self.key, data)

    def unlink(self, missing_ok: bool = False) -> None:
        self.store.delete(self.key)

    def iterdir(self):
        """Objects and "folders" directly under this key."""
        prefix = f"{self.key}/" if self.key else ""
        names = dict.fromkeys(k[len(prefix):].split("/", 1)[0]
                              for k in self.store.list(prefix))
        return [self / name for name in names]


def as_path(location):
    """``location`` as a Path, or unchanged when it is a :class:`StorePath`."""
    return location if isinstance(location, StorePath) else Path(location)
