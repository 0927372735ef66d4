"""A scored source: the partitions of a data source scored by one model, mirroring the
source's paths, and the state file that remembers which input file (by sha256) each holds.

A run lists the source, scores the partitions whose sha256 it has not scored (new files, and
files re-ingested with other content), and for each puts the scored partition in place (a
rename on disk, one PUT in object storage) and then records it in ``_rareflow_scored.json``
(schemas/scored.py), both atomic: a reader never sees half a partition, and a crash between
the two only makes the next run score that partition again. The scored source is a local
folder or an object-storage URL; one run at a time writes it (a file lock, or a lease in
object storage: :mod:`tasks.serving.scored_lease`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from schemas.errors import ConfigError, DataError
from schemas.scored import (
    KEY_ID_COLUMN,
    KEY_TIME_COLUMN,
    SCORED_DEFAULT_SUFFIX,
    SCORED_SUFFIX,
    STATE_FILE,
    STATE_KEY,
    STATE_MODEL,
    STATE_PARTITIONS,
)
from tasks.data.source_files import DATA_SUFFIXES, GLOB_CHARS, SourceFiles
from tasks.registry.signing import SIGNATURE_FILE
from tasks.runtime.durable_files import dumps, fsync_dir, sha256_file
from tasks.runtime.object_store import open_store, read_json, readable
from tasks.runtime.object_store_api import ObjectStore, is_remote
from tasks.serving.key_index import KeyIndex
from tasks.serving.partition_scoring import PartitionScore, Serving
from tasks.serving.repeated_keys import refuse_repeats_within, refuse_shared, scored_keys
from tasks.serving.scored_lease import held

logger = logging.getLogger(__name__)

KEYS_DIR = ".rareflow_keys"  # per scored partition: the sorted hashes of its row keys
STAGING_DIR = ".rareflow_staging"  # object storage: partitions Dask workers uploaded, unchecked
DIGESTS_FILE = ".rareflow_digests.json"  # input file size, mtime -> sha256: reruns hash nothing


def default_out(files: SourceFiles) -> Path:
    """``<source>-scored`` beside the source folder (a glob: beside its fixed folder).

    Raises:
        ConfigError: the source is in object storage (its scored source needs an --out).
    """
    if files.fetch is not None:
        raise ConfigError(f"--out is required to score the source {files.spec!r} in object "
                          "storage: give a local folder (or one on shared storage) for the "
                          "scored source")
    root = files.root.resolve()
    return root.parent / f"{root.name}{SCORED_DEFAULT_SUFFIX}"


def check_out(files: SourceFiles, out) -> Path | str:
    """The scored source's folder or URL, never inside the input source.

    Raises:
        ConfigError: ``out`` is the source or inside it, or is a file.
    """
    if is_remote(out):
        spec = files.spec  # a glob: its fixed folder
        if GLOB_CHARS & set(spec):
            spec = spec[:min(spec.index(c) for c in GLOB_CHARS if c in spec)].rsplit("/", 1)[0]
        if files.fetch is not None and f"{str(out).rstrip('/')}/".startswith(
                f"{spec.rstrip('/')}/"):
            raise ConfigError(f"--out {str(out)!r} is inside the input source {files.spec!r}: "
                              "its partitions would be read as input; choose a prefix beside it")
        return str(out).rstrip("/")
    out = Path(out)
    hint = "" if files.fetch is not None else f" (default {str(default_out(files))!r})"
    root, target = files.root.resolve(), out.resolve()
    if files.fetch is None and (target == root or root in target.parents):
        raise ConfigError(f"--out {str(out)!r} is inside the input source {files.spec!r}: its "
                          f"partitions would be read as input; choose a folder beside it{hint}")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; a source is scored into a folder"
                          f"{hint}")
    return out


def scored_relpath(rel: str) -> str:
    """Where an input partition's scored rows go: its path with the suffix ``.parquet``."""
    for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)] + SCORED_SUFFIX
    return rel + SCORED_SUFFIX


def signature_digest(version_dir) -> str | None:
    """The version's signature digest: the sha256 of its ``signature.json`` (None: unsigned);
    ``version_dir`` a local folder or a registry's folder in object storage."""
    path = version_dir / SIGNATURE_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def read_state(store: ObjectStore, out, name: str) -> dict:
    """The scored source's state for model ``name`` (empty when new).

    Raises:
        DataError: the state is unreadable, or another model wrote this scored source.
    """
    try:
        state = read_json(store, STATE_FILE)
        if state is None:
            return {STATE_MODEL: name, STATE_PARTITIONS: {}}
        owner, parts = state[STATE_MODEL], state[STATE_PARTITIONS]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"scored source {str(out)!r}: {STATE_FILE} is unreadable ({exc}); "
                        "restore it, or score into a new --out folder") from exc
    if owner != name:
        raise DataError(f"scored source {str(out)!r} holds the decisions of model {owner!r}, "
                        f"not {name!r}: score model {name!r} into another --out folder (one "
                        "scored source per model)")
    return {STATE_MODEL: owner, STATE_PARTITIONS: dict(parts),
            **({STATE_KEY: state[STATE_KEY]} if STATE_KEY in state else {})}


@dataclass
class ScoredSource:
    """A source, where its scored partitions go, and what was scored there already."""

    files: SourceFiles
    out: Path | str  # a local folder or an object-storage URL
    name: str
    store: ObjectStore
    state: dict = field(default_factory=dict)
    digests: dict = field(default_factory=dict)
    check_lease: Callable[[], None] = lambda: None  # before a write: the lease is still held
    staging: Path | None = None  # object storage: where partitions are scored before upload
    run: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def open(cls, files: SourceFiles, out, name: str) -> ScoredSource:
        out = check_out(files, out)
        store = open_store(out)
        return cls(files, out, name, store, read_state(store, out, name))

    @contextlib.contextmanager
    def locked(self):
        """One run at a time on this scored source; the state read again under the lock."""
        with held(self.store) as check_lease:
            self.check_lease = check_lease
            self.state = read_state(self.store, self.out, self.name)
            for stale in self.store.list(f"{STAGING_DIR}/") if is_remote(self.out) else []:
                self.store.delete(stale)  # a dead run's uploads (this run holds the lease)
            try:
                yield self
            finally:
                self.check_lease = lambda: None
                if self.staging is not None:
                    shutil.rmtree(self.staging, ignore_errors=True)
                    self.staging = None

    def keyed_as(self, serving: Serving) -> None:
        """Record how this run keys its rows; refuse keys unlike those already scored here.

        Raises:
            DataError: the scored rows are keyed by another id or time column.
        """
        mine = {KEY_ID_COLUMN: serving.id_column, KEY_TIME_COLUMN: serving.time_column}
        known = self.state.get(STATE_KEY)
        if known is not None and known != mine and self.partitions:
            said = ", ".join(f"--{k.replace('_', '-')} {v or '(none)'}" for k, v in known.items())
            raise DataError(f"scored source {str(self.out)!r} keys its rows with {said}: score "
                            "with the same options, or into a new --out folder (rows keyed two "
                            "ways could not be joined with their labels)")
        self.state[STATE_KEY] = mine

    @property
    def partitions(self) -> dict:
        return self.state[STATE_PARTITIONS]

    def stamp(self, path: Path) -> list:
        """What says an input file is unchanged since it was hashed: its size and mtime, or
        for a file in object storage the ETag it was listed with."""
        if path in self.files.tags:
            return ["etag", self.files.tags[path]]
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def _digest(self, path: Path, rel: str, cache: dict, *, hash_new: bool) -> str | None:
        stamp = self.stamp(path)
        known = cache.get(rel)
        if known and known[:2] == stamp:
            self.digests[rel] = known
            return known[2]
        if not hash_new:
            return None
        return self.remember(rel, stamp, sha256_file(self.files.local(path)))

    def remember(self, rel: str, stat: list[int], digest: str) -> str:
        """Remember an input file's sha256 for the size and mtime it had when hashing began
        (a file changed since has another mtime: it is hashed again); reruns hash nothing."""
        self.digests[rel] = [*stat, digest]
        return digest

    def pending(self, *, hash_new: bool = True) -> list[tuple[Path, str, str | None]]:
        """(path, relpath, sha256) of every input file not scored with its current content.

        ``hash_new`` off: a file whose size or mtime changed since it was last hashed is
        listed with sha256 None, for whoever reads it anyway to hash it (a Dask worker); the
        caller then compares it with what is recorded (:meth:`unchanged`) and
        :meth:`save_digests` once done.
        """
        with contextlib.suppress(OSError, ValueError, TypeError):
            self.digests = dict(read_json(self.store, DIGESTS_FILE) or {})
        cache, self.digests = self.digests, {}
        todo, targets = [], {}
        for path in self.files.files:
            rel = self.files.rel(path)
            other = targets.setdefault(scored_relpath(rel), rel)
            if other != rel:
                raise DataError(f"partitions {other} and {rel} of {self.files.spec!r} would "
                                f"both be scored into {scored_relpath(rel)}: rename one")
            digest = self._digest(path, rel, cache, hash_new=hash_new)
            if digest is None or self.partitions.get(rel, {}).get("sha256") != digest:
                todo.append((path, rel, digest))
        self.save_digests()
        return todo

    def unchanged(self, rel: str, digest: str) -> bool:
        """Whether ``rel`` is already scored with this content (a file only touched)."""
        return self.partitions.get(rel, {}).get("sha256") == digest

    def save_digests(self) -> None:
        self.store.write(DIGESTS_FILE, dumps(self.digests).encode())

    def target(self, rel: str) -> Path:
        """Where a partition is scored into its temporary file: its place in a local scored
        source, else a local staging folder of this run (uploaded from there)."""
        if not is_remote(self.out):
            return Path(self.out) / scored_relpath(rel)
        if self.staging is None:
            self.staging = Path(tempfile.mkdtemp(prefix="rareflow-scored-"))
        return self.staging / scored_relpath(rel)

    def staging_key(self, rel: str) -> str:
        """Object storage: where a Dask worker uploads a partition it scored, before the flow
        checks its keys and copies it in place."""
        return f"{STAGING_DIR}/{self.run}/{scored_relpath(rel)}"

    def scored(self, rel: str) -> bool:
        return self.store.exists(scored_relpath(rel))

    def placed(self, rel: str) -> str:
        """Where a scored partition is, for messages."""
        return self.store.where(scored_relpath(rel))

    def where(self, rel: str) -> str:
        """How messages name an input partition."""
        return f"{rel} of {self.files.spec}"

    def check_all_repeats(self, items: list[tuple[str, PartitionScore]], key_column: str
                          ) -> list[DataError | None]:
        """Refuse each new partition whose row keys repeat: within it, in a partition scored
        before (each one's key file read once, however many partitions are new), or in a new
        partition before it that is not refused itself. As one partition at a time would.

        Returns:
            For each item, the DataError refusing it (its temporary file removed) or None;
            the accepted ones have their ``sorted_hashes``.
        """
        errors: list[DataError | None] = [None] * len(items)
        for i, (rel, result) in enumerate(items):
            errors[i] = self._refuse(result, refuse_repeats_within, rel, result, key_column,
                                     partial(self.rows_of, result))
        self._against_scored(items, errors, key_column)
        index, accepted = KeyIndex(), []
        for i, (rel, result) in enumerate(items):
            if errors[i] is not None:
                continue
            if len(hits := index.common(result.sorted_hashes)):
                errors[i] = self._refuse(
                    result, refuse_shared, rel, result, hits, key_column,
                    partial(self.rows_of, result), [(items[j][0], items[j][1].sorted_hashes,
                                                     partial(self.rows_of, items[j][1]))
                                                    for j in accepted])
                if errors[i] is not None:
                    continue
            index.add(result.sorted_hashes)
            accepted.append(i)
        return errors

    def _against_scored(self, items: list[tuple[str, PartitionScore]],
                        errors: list[DataError | None], key_column: str) -> None:
        """Refuse (in ``errors``) the new partitions that repeat a key of a partition scored
        before this run, reading each one's key file once."""
        index = KeyIndex()
        for i, (_, result) in enumerate(items):
            if errors[i] is None:
                index.add(result.sorted_hashes)
        new = {rel for rel, _ in items}
        for other in [p for p in self.partitions if p not in new]:
            if not any(e is None for e in errors) or not self.scored(other):
                continue
            theirs = self._sorted_hashes(other)
            if not len(hits := index.common(theirs)):
                continue
            for i, (rel, result) in enumerate(items):
                if errors[i] is None:
                    errors[i] = self._refuse(result, refuse_shared, rel, result, hits,
                                             key_column, partial(self.rows_of, result),
                                             [(other, theirs, partial(self.partition, other))])

    def _refuse(self, result: PartitionScore, check, *args) -> DataError | None:
        """``check(*args)``'s refusal (the partition's temporary file then removed), or
        None."""
        try:
            check(*args)
        except DataError as exc:
            self.discard(result)
            return exc
        return None

    def rows_of(self, result: PartitionScore):
        """A partition scored in this run, for pyarrow to read: its temporary file, or the
        staged object a Dask worker uploaded."""
        return result.tmp if result.staged is None else readable(self.store, result.staged)

    def discard(self, result: PartitionScore) -> None:
        """Remove a refused partition's temporary file (or staged object)."""
        if result.staged is not None:
            self.store.delete(result.staged)
        else:
            result.tmp.unlink(missing_ok=True)

    def partition(self, rel: str):
        """A scored partition for pyarrow to read (a path, or its bytes)."""
        return readable(self.store, scored_relpath(rel))

    def key_file(self, rel: str) -> str:
        """The sorted 64-bit hashes of a scored partition's keys (one partition's worth in
        memory at a time when new partitions are checked against the others)."""
        return f"{KEYS_DIR}/{scored_relpath(rel)}.npy"

    def _sorted_hashes(self, rel: str) -> np.ndarray:
        with contextlib.suppress(OSError, ValueError, EOFError):
            if (data := self.store.read(self.key_file(rel))) is not None:
                return np.load(io.BytesIO(data), allow_pickle=False)
        found = [h for _, h in scored_keys(self.partition(rel))]  # written before key files: scan
        return np.sort(np.concatenate(found)) if found else np.zeros(0, np.uint64)

    def commit(self, rel: str, digest: str, result: PartitionScore, serving: Serving) -> dict:
        """Put a scored partition in place, then record it in the state file.

        Raises:
            LeaseLost: another run took this run's lease over (nothing recorded).
        """
        self.check_lease()
        buffer = io.BytesIO()
        np.save(buffer, result.sorted_hashes if result.sorted_hashes is not None
                else np.sort(result.hashes()))
        self.store.write(self.key_file(rel), buffer.getvalue())
        if result.staged is not None:  # uploaded by a Dask worker
            self.store.copy(result.staged, scored_relpath(rel))
            self.store.delete(result.staged)
        elif is_remote(self.out):
            self.store.write(scored_relpath(rel), result.tmp.read_bytes())  # appears whole
            result.tmp.unlink(missing_ok=True)
        else:
            os.replace(result.tmp, self.target(rel))
            fsync_dir(self.target(rel).parent)
        # the fields of schemas/scored.py: PARTITION_FIELDS
        entry = {"sha256": digest, "version": serving.version, "rows": result.rows,
                 "scored_at": serving.scored_at.isoformat()}
        self.partitions[rel] = entry
        self.check_lease()
        self.store.write(STATE_FILE, dumps(self.state).encode())
        return entry
