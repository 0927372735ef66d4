"""Tables and sources at an fsspec URL (``s3://``, ``gs://``, ``abfs://``, ...): fetched to a
private temporary folder for the run, and outputs uploaded whole (one PUT: readers see the
old object or the new one).

A folder source is listed, not copied (:func:`list_source`): a data file is fetched the first
time the run opens it (``SourceFiles.local``), so partitions the window prunes by their date
folder never cross the network, and a file fetched once in a process is not fetched again
while its ETag (or size) is unchanged. A Parquet file's footer is read alone, by range
requests, to count its rows and to prune it by its time column's statistics: a partition
outside the window is never fetched. A version records the sha256 of every file it read, so a
file that is read is fetched whole. The temporary folders are removed when the process
exits. Credentials come from the filesystem's standard chain
(``AWS_ENDPOINT_URL``/``AWS_ACCESS_KEY_ID``..., a profile, a role) plus
``RAREFLOW_STORAGE_OPTIONS``; messages name the URL and never a credential.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import ConfigError, DataError, RareflowError
from tasks.runtime.object_store_api import (
    CLOUDS,
    S3_CLIENT_CONFIG,
    cloud_of,
    install_hint,
    missing_root,
    storage_options,
    storage_problem,
)

logger = logging.getLogger(__name__)

GLOB_CHARS = frozenset("*?[")
FOOTER_BLOCK = 1 << 16  # bytes a footer read asks for at a time
_FOLDERS: list[str] = []


def _filesystem(url: str, what: str = "data"):
    """The fsspec filesystem of ``url`` and the path inside it.

    Raises:
        ConfigError: its filesystem package is not installed (names the extra).
        DataError: an Azure or GCS endpoint cannot be reached or refuses the credentials
            (``what``: "data" or "output", the message's first word).
    """
    import fsspec
    from fsspec.core import url_to_fs

    scheme = url.split("://", 1)[0].lower()
    options = storage_options()
    if cloud_of(url) == "s3":
        options.setdefault("config_kwargs", S3_CLIENT_CONFIG)
    try:
        fsspec.get_filesystem_class(scheme)
        _probe(url, options, what)
        return url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        cloud = cloud_of(url)
        extra = install_hint(cloud) if cloud else f"the fsspec package for {scheme}://"
        raise ConfigError(f"{url!r} needs {extra}: {type(exc).__name__}") from None


def _probe(url: str, options: dict, what: str) -> None:
    """On Azure and GCS, ask for ``url`` once with the registry store's short retries before
    the fsspec filesystem does (adlfs retries for about 90 s, gcsfs for minutes, before an
    unreachable endpoint or a refused key becomes an error).

    Raises:
        DataError: the storage cannot be reached or refuses (one line, naming ``url``).
    """
    cloud = cloud_of(url)
    probe = cloud and getattr(importlib.import_module(CLOUDS[cloud]["store"][0]), "probe", None)
    if probe is None:
        return
    try:
        probe(url, options)
    except RareflowError:
        raise
    except Exception as exc:  # the cloud client's own errors: network, refusals
        raise DataError(f"{what} {url!r}: {storage_problem(exc, url)}") from None


def _root_exists(fs, path: str) -> bool:
    """Whether the bucket (container) of ``path`` exists (True when that cannot be told)."""
    try:
        return bool(fs.exists(path.split("/", 1)[0]))
    except Exception:  # noqa: BLE001 - only to choose the message
        return True


def _scratch() -> Path:
    folder = tempfile.mkdtemp(prefix="rareflow-remote-")
    if not _FOLDERS:
        atexit.register(lambda: [shutil.rmtree(f, ignore_errors=True) for f in _FOLDERS])
    _FOLDERS.append(folder)
    return Path(folder)


def _listing(fs, path: str) -> tuple[str, list[str], str]:
    """(root, files, kind) of a remote file, folder or glob."""
    if GLOB_CHARS & set(path):
        root = path[:min(path.index(c) for c in GLOB_CHARS if c in path)].rsplit("/", 1)[0]
        return root, sorted(fs.glob(path)), "glob"
    if fs.isdir(path):
        return path, sorted(fs.find(path)), "directory"
    if fs.isfile(path):
        return path.rsplit("/", 1)[0], [path], "file"
    raise FileNotFoundError(path)


def fetch_source(url: str) -> str:
    """Copy a remote file, folder or glob into a temporary folder; the local equivalent
    (a file, the folder, or the glob under it).

    Raises:
        DataError: nothing there, or the storage cannot be reached or refuses (one line).
    """
    fs, path = _filesystem(url)
    try:
        root, files, kind = _listing(fs, path.rstrip("/"))
        local = _scratch()
        for remote in files:
            target = local / remote[len(root):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(target))
    except FileNotFoundError as exc:
        if "NoSuchBucket" in str(getattr(exc, "__cause__", "")) or "bucket" in str(exc).lower() \
                or not _root_exists(fs, path):
            raise DataError(f"data {url!r}: {missing_root(url)}") from None
        raise DataError(f"data path {url!r} does not exist") from None
    except (ConfigError, DataError):
        raise
    except Exception as exc:  # botocore's and the network's own
        raise DataError(f"data {url!r}: {storage_problem(exc, url)}") from None
    logger.info("Fetched %d file(s) of %s", len(files), url)
    if kind == "file":
        return str(local / path.rsplit("/", 1)[-1])
    if kind == "glob":
        return str(local / path[len(root):].lstrip("/"))
    return str(local)


def upload(local: Path, url: str) -> str:
    """Put a finished local file at ``url`` (one whole object); returns the URL.

    Raises:
        DataError: the storage cannot be reached or refuses the write (one line).
    """
    fs, path = _filesystem(url, "output")
    try:
        fs.put_file(str(local), path)
    except Exception as exc:
        raise DataError(f"output {url!r}: {storage_problem(exc, url)}") from None
    return url


_LISTED: dict[str, Path] = {}  # a remote folder's URL -> its local mirror (this process)
_FETCHED: dict[Path, str] = {}  # a mirrored file -> the ETag (or size) it was fetched at


class MirroredFolder:
    """A listed remote folder's files on local disk: each fetched the first time it is read
    (again only when its ETag changed), or only its Parquet footer read."""

    def __init__(self, url: str, fs, path: str, local: Path, tags: dict[Path, str]):
        self.url, self.fs, self.path, self.local, self.tags = url, fs, path, local, tags

    def _remote(self, target: Path) -> str:
        return f"{self.path}/{target.relative_to(self.local).as_posix()}"

    def _fetched(self, target: Path) -> bool:
        return _FETCHED.get(target) == self.tags.get(target) and target.is_file()

    def fetch(self, target: Path) -> None:
        if self._fetched(target):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fs.get_file(self._remote(target), str(target))
        except Exception as exc:
            raise DataError(f"data {self.url!r}: {storage_problem(exc, self.url)}") from None
        _FETCHED[target] = self.tags.get(target)

    def footer(self, target: Path):
        """A Parquet file's metadata: from the fetched copy, or its footer alone (small
        range requests: the footer's length, then the footer)."""
        if self._fetched(target):
            return pq.read_metadata(target)
        try:
            with self.fs.open(self._remote(target), "rb", block_size=FOOTER_BLOCK) as handle:
                return pq.read_metadata(handle)
        except pa.ArrowException:
            raise  # not a Parquet file: reading it reports the problem
        except Exception as exc:  # the storage's (s3fs's OSErrors too): one line
            raise DataError(f"data {self.url!r}: {storage_problem(exc, self.url)}") from None


def mirror_file(url: str, local: Path) -> MirroredFolder:
    """One remote file as a mirrored folder of one, fetched into ``local`` when read."""
    fs, path = _filesystem(url)
    parent, name = path.rsplit("/", 1)
    return MirroredFolder(url, fs, parent, local, {local / name: url})


def list_source(url: str, keep, eager
                ) -> tuple[Path, dict[Path, str], object, dict[Path, str], object] | None:
    """A remote folder's files, listed: (its local mirror, {local path: URL} of the files
    ``keep(relative path)`` accepts, a ``fetch(local path)`` that copies one, {local
    path: ETag (or size)}, and a ``footer(local path)`` that reads a Parquet file's metadata
    alone, by range requests); None when ``url`` is not a folder. The files ``eager(relative
    path)`` names (the source's schema file) are fetched at once; the rest of the folder is
    left alone.

    Raises:
        DataError: nothing there, or the storage cannot be reached or refuses (one line).
    """
    fs, path = _filesystem(url)
    path = path.rstrip("/")
    try:
        listing = fs.find(path, detail=True) if fs.isdir(path) else None
    except Exception as exc:  # botocore's and the network's own
        raise DataError(f"data {url!r}: {storage_problem(exc, url)}") from None
    if listing is None:
        return None
    local = _LISTED.get(url) or _LISTED.setdefault(url, _scratch())
    tags, wanted = {}, {}
    now = []
    for remote, info in sorted(listing.items()):
        rel = remote[len(path):].lstrip("/")
        target = local / rel
        tags[target] = str(info.get("ETag") or info.get("etag") or info.get("size"))
        if keep(rel):
            wanted[target] = remote
        elif eager(rel):
            now.append(target)
    folder = MirroredFolder(url, fs, path, local, tags)
    for target in now:
        folder.fetch(target)
    logger.info("Listed %d data file(s) of %s (fetched when read)", len(wanted), url)
    scheme = url.split("://", 1)[0]
    return (local, {t: f"{scheme}://{r}" for t, r in wanted.items()}, folder.fetch,
            {t: tags[t] for t in wanted}, folder.footer)
