"""Where durable bytes live: a local folder or an fsspec URL (``s3://bucket/prefix``), behind
one small interface the registry writes through.

:class:`ObjectStore` is whole-object reads and writes, listing, put-if-absent and
compare-and-swap on a tag (an S3 ETag; a content digest on local disk), and delete.
:class:`LocalStore` keeps files (atomic rename, fsync; its compare-and-swap holds a file lock);
the S3 store (``tasks/runtime/_s3_store.py``), the Azure store
(``tasks/runtime/azure_store.py``) and the GCS store (``tasks/runtime/gcs_store.py``) use
their service's conditional writes and need no lock.
:class:`StorePath` lets code written for ``pathlib.Path`` (``/``, ``is_file``,
``read_bytes``...) read and write a store's objects.

Credentials and the endpoint come from the cloud's standard chain (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, a profile, an instance role; ``AZURE_STORAGE_CONNECTION_STRING``, an
account key, a managed identity; Google's Application Default Credentials);
``RAREFLOW_STORAGE_OPTIONS`` (JSON) passes anything else to fsspec. Neither is ever written
to a message or a log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from schemas.errors import ConfigError
from tasks.runtime.durable_files import fsync_dir, write_bytes_atomic
from tasks.runtime.object_store_api import (
    CLOUDS,
    ObjectStore,
    cloud_of,
    install_hint,
    is_remote,
    local_path,
    storage_options,
)


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


def open_remote(url: str, options: dict) -> ObjectStore:
    """The store of an ``s3://``, ``az://`` or ``gs://`` URL (``CLOUDS``).

    Raises:
        ConfigError: another scheme, or its client is not installed (names the extra).
    """
    import importlib

    cloud = cloud_of(url)
    if cloud is None:
        raise ConfigError(f"{url!r}: a registry on {url.split('://', 1)[0]}:// needs "
                          "conditional writes rareflow implements only for S3 (s3://), Azure "
                          "Blob Storage (az://) and Google Cloud Storage (gs://); use one of "
                          "them or a local folder")
    about = CLOUDS[cloud]
    try:
        importlib.import_module(about["client"])
    except ImportError:
        raise ConfigError(f"{url!r} needs {about['client']}: install rareflow with "
                          f"{install_hint(cloud)}") from None
    module, name = about["store"]
    return getattr(importlib.import_module(module), name)(url, options)


def open_store(location, options: dict | None = None) -> ObjectStore:
    """The store at ``location``: a local folder (or ``file://``), else an fsspec URL.

    Raises:
        ConfigError: the URL's filesystem is not installed (names the extra to install).
    """
    if not is_remote(location):
        return LocalStore(location)
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


def readable(store: ObjectStore, key: str):
    """An object for pyarrow to read (a Parquet file): its path on local disk, else its bytes.

    Raises:
        FileNotFoundError: no such object.
    """
    if isinstance(store, LocalStore):
        return store.root / key
    import pyarrow as pa

    data = store.read(key)
    if data is None:
        raise FileNotFoundError(store.where(key))
    return pa.BufferReader(data)


def read_json(store: ObjectStore, key: str) -> dict | None:
    """A JSON object of the store (None: absent).

    Raises:
        ValueError: it is not JSON.
    """
    data = store.read(key)
    return None if data is None else json.loads(data.decode("utf-8"))
