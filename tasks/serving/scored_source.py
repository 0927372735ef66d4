"""A scored source: the partitions of a data source scored by one model, mirroring the
source's paths, and the state file that remembers which input file (by sha256) each holds.

A run lists the source, scores the partitions whose sha256 it has not scored (new files, and
files re-ingested with other content), and for each puts the scored partition in place with a
rename and then records it in ``_rareflow_scored.json`` (schemas/scored.py), both atomic: a
reader never sees half a partition, and a crash between the two only makes the next run score
that partition again. One run at a time per scored source (a file lock).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from filelock import FileLock

from schemas.errors import ConfigError, DataError
from schemas.scored import (
    ROW_KEY,
    SCORED_DEFAULT_SUFFIX,
    SCORED_SUFFIX,
    STATE_FILE,
    STATE_MODEL,
    STATE_PARTITIONS,
)
from tasks.data.row_keys import key_hashes
from tasks.data.source_files import DATA_SUFFIXES, SourceFiles
from tasks.registry.signing import SIGNATURE_FILE
from tasks.runtime.durable_files import dumps, fsync_dir, sha256_file, write_bytes_atomic
from tasks.serving.key_index import KeyIndex, shared_hashes
from tasks.serving.partition_scoring import (
    PartitionScore,
    Serving,
    no_challenger,
    score_partition,
)

logger = logging.getLogger(__name__)

LOCK_FILE = ".rareflow_scored.lock"
KEYS_DIR = ".rareflow_keys"  # per scored partition: the sorted hashes of its row keys
DIGESTS_FILE = ".rareflow_digests.json"  # input file size, mtime -> sha256: reruns hash nothing
KEY_BATCH_ROWS = 1 << 20
# new partitions whose keys are checked together: their hashes (8 bytes a row) in memory
KEY_CHECK_ROWS = 1 << 24


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


def check_out(files: SourceFiles, out: Path) -> Path:
    """The scored source's folder, never inside the input source.

    Raises:
        ConfigError: ``out`` is the source or inside it, or is a file.
    """
    root, target = files.root.resolve(), out.resolve()
    if target == root or root in target.parents:
        raise ConfigError(f"--out {str(out)!r} is inside the input source {files.spec!r}: its "
                          "partitions would be read as input; choose a folder beside it "
                          f"(default {str(default_out(files))!r})")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; a source is scored into a folder "
                          f"(default {str(default_out(files))!r})")
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


def read_state(out: Path, name: str) -> dict:
    """The scored source's state for model ``name`` (empty when new).

    Raises:
        DataError: the state is unreadable, or another model wrote this scored source.
    """
    path = out / STATE_FILE
    if not path.is_file():
        return {STATE_MODEL: name, STATE_PARTITIONS: {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        owner, parts = state[STATE_MODEL], state[STATE_PARTITIONS]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"scored source {str(out)!r}: {STATE_FILE} is unreadable ({exc}); "
                        "restore it, or score into a new --out folder") from exc
    if owner != name:
        raise DataError(f"scored source {str(out)!r} holds the decisions of model {owner!r}, "
                        f"not {name!r}: score model {name!r} into another --out folder (one "
                        "scored source per model)")
    return {STATE_MODEL: owner, STATE_PARTITIONS: dict(parts)}


@dataclass
class ScoredSource:
    """A source, where its scored partitions go, and what was scored there already."""

    files: SourceFiles
    out: Path
    name: str
    state: dict = field(default_factory=dict)
    digests: dict = field(default_factory=dict)

    @classmethod
    def open(cls, files: SourceFiles, out: Path, name: str) -> ScoredSource:
        out = check_out(files, out)
        return cls(files, out, name, read_state(out, name))

    @contextlib.contextmanager
    def locked(self):
        """One run at a time on this scored source; the state read again under the lock."""
        self.out.mkdir(parents=True, exist_ok=True)
        with FileLock(self.out / LOCK_FILE):
            self.state = read_state(self.out, self.name)
            yield self

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
        with contextlib.suppress(OSError, ValueError):
            self.digests = dict(json.loads((self.out / DIGESTS_FILE).read_text(
                encoding="utf-8")))
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
        write_bytes_atomic(self.out / DIGESTS_FILE, dumps(self.digests).encode())

    def target(self, rel: str) -> Path:
        return self.out / scored_relpath(rel)

    def where(self, rel: str) -> str:
        """How messages name an input partition."""
        return f"{rel} of {self.files.spec}"

    def check_all_repeats(self, items: list[tuple[str, PartitionScore]], key_column: str
                          ) -> list[DataError | None]:
        """Refuse each new partition whose row keys repeat: within it, in a new partition
        before it, or in a partition scored before (each one's key file read once, however
        many partitions are new).

        Returns:
            For each item, the DataError refusing it (its temporary file removed) or None;
            the accepted ones have their ``sorted_hashes``.
        """
        errors: list[DataError | None] = [None] * len(items)
        index, accepted = KeyIndex(), []
        for i, (rel, result) in enumerate(items):
            try:
                _refuse_repeats_within(rel, result, key_column)
                if len(hits := index.common(result.sorted_hashes)):
                    _refuse_shared(rel, result, hits, key_column,
                                   [(items[j][0], items[j][1].sorted_hashes, items[j][1].tmp)
                                    for j in accepted])
            except DataError as exc:
                result.tmp.unlink(missing_ok=True)
                errors[i] = exc
                continue
            index.add(result.sorted_hashes)
            accepted.append(i)
        new = {rel for rel, _ in items}
        for other in [p for p in self.partitions if p not in new]:
            if not accepted or not self.target(other).is_file():
                continue
            theirs = self._sorted_hashes(other)
            if not len(hits := index.common(theirs)):
                continue
            for i in list(accepted):
                rel, result = items[i]
                try:
                    _refuse_shared(rel, result, hits, key_column,
                                   [(other, theirs, self.target(other))])
                except DataError as exc:
                    result.tmp.unlink(missing_ok=True)
                    errors[i] = exc
                    accepted.remove(i)
        return errors

    def key_file(self, rel: str) -> Path:
        """The sorted 64-bit hashes of a scored partition's keys (one partition's worth in
        memory at a time when a new partition is checked against the others)."""
        return self.out / KEYS_DIR / f"{scored_relpath(rel)}.npy"

    def _sorted_hashes(self, rel: str) -> np.ndarray:
        with contextlib.suppress(OSError, ValueError):
            return np.load(self.key_file(rel), allow_pickle=False)
        found = [h for _, h in _keys(self.target(rel))]  # written before key files: scan it
        return np.sort(np.concatenate(found)) if found else np.zeros(0, np.uint64)

    def commit(self, rel: str, digest: str, result: PartitionScore, serving: Serving) -> dict:
        """Put a scored partition in place, then record it in the state file."""
        target, keys = self.target(rel), self.key_file(rel)
        keys.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, result.sorted_hashes if result.sorted_hashes is not None
                else np.sort(result.hashes()))
        write_bytes_atomic(keys, buffer.getvalue())
        os.replace(result.tmp, target)
        fsync_dir(target.parent)
        # the fields of schemas/scored.py: PARTITION_FIELDS
        entry = {"sha256": digest, "version": serving.version, "rows": result.rows,
                 "scored_at": serving.scored_at.isoformat()}
        self.partitions[rel] = entry
        write_bytes_atomic(self.out / STATE_FILE, dumps(self.state).encode())
        return entry


def _refuse_repeats_within(rel: str, result: PartitionScore, key_column: str) -> None:
    """Sort the partition's key hashes; refuse a key it holds twice.

    Raises:
        DataError: naming the key and the partition.
    """
    hashes = np.sort(result.hashes())
    dup = hashes[1:][hashes[1:] == hashes[:-1]]
    if len(dup) and (key := _repeated_value(result.tmp, dup)) is not None:
        raise _repeat_error(key, key_column, rel, rel)
    result.sorted_hashes, result.key_hashes = hashes, []  # one copy in memory, not two


def _refuse_shared(rel: str, result: PartitionScore, hits: np.ndarray, key_column: str,
                   others: list[tuple[str, np.ndarray, Path]]) -> None:
    """Refuse the partition if one of ``others`` (name, sorted hashes, scored file) holds a
    key of it among ``hits`` (equal hashes of different keys are no repeat).

    Raises:
        DataError: naming the key and both partitions.
    """
    for other, theirs, path in others:
        common = shared_hashes(theirs, shared_hashes(hits, result.sorted_hashes))
        if len(common) and (key := _shared_value(result.tmp, path, common)) is not None:
            raise _repeat_error(key, key_column, other, rel)


def _repeat_error(key, key_column: str, first: str, second: str) -> DataError:
    where = f"twice in partition {first}" if first == second else (
        f"in partitions {first} and {second}")
    fix = ("remove the duplicated rows, or name a unique id_column" if key_column == ROW_KEY
           else f"fix the {key_column!r} values")
    return DataError(f"row key {key_column}={key!r} repeats {where}; each row needs a unique "
                     f"key: {fix} and score again; nothing of {second} was written")


def _keys(path: Path):
    """The key column (the first) of a scored partition, a batch of values at a time."""
    parquet = pq.ParquetFile(path)
    for batch in parquet.iter_batches(batch_size=KEY_BATCH_ROWS,
                                      columns=parquet.schema_arrow.names[:1]):
        values = batch.column(0).to_numpy(zero_copy_only=False)
        yield values, key_hashes(values)


def _values(path: Path, wanted: np.ndarray) -> pd.Series:
    parts = [pd.Series(v[np.isin(h, wanted)], dtype=object) for v, h in _keys(path)]
    return pd.concat(parts, ignore_index=True) if parts else pd.Series(dtype=object)


def _repeated_value(path: Path, wanted: np.ndarray):
    values = _values(path, wanted).astype(str)
    repeated = values[values.duplicated()]
    return repeated.iloc[0] if len(repeated) else None


def _shared_value(path: Path, other: Path, wanted: np.ndarray):
    mine = set(_values(path, wanted).astype(str))
    theirs = _values(other, wanted).astype(str)
    shared = theirs[theirs.isin(mine)]
    return shared.iloc[0] if len(shared) else None


def score_pending(scored: ScoredSource, todo: list[tuple[Path, str, str]], serving: Serving,
                  *, extra=no_challenger, score_one=score_partition) -> list[dict]:
    """Score the ``todo`` partitions one after the other, and check their keys and put them
    in place in groups of about ``KEY_CHECK_ROWS`` rows: every scored partition's key file is
    read once per group, not once per new partition. A failure puts the partitions scored
    before it in place first.

    Returns:
        Each partition's state entry with ``partition`` and ``flagged``.

    Raises:
        The first partition's failure (a bad partition, a repeated key).
    """
    done: list[dict] = []
    group: list[tuple[str, str, PartitionScore]] = []
    try:
        for path, rel, digest in todo:
            group.append((rel, digest, score_one(scored.files.local(path), scored.target(rel),
                                                 serving, where=scored.where(rel),
                                                 extra=extra)))
            if sum(result.rows for _, _, result in group) >= KEY_CHECK_ROWS:
                done += settle_all(scored, group, serving)
                group = []
    except Exception:
        with contextlib.suppress(DataError):
            settle_all(scored, group, serving)  # keep what was scored before the failure
        raise
    return done + settle_all(scored, group, serving)


def settle_all(scored: ScoredSource, group: list[tuple[str, str, PartitionScore]],
               serving: Serving) -> list[dict]:
    """Check the keys of partitions scored into their temporary files, and put in place and
    record those accepted.

    Raises:
        DataError: the first refused partition's, once the others are in place.
    """
    refused = scored.check_all_repeats([(rel, result) for rel, _, result in group],
                                       serving.key_column)
    done = [settle(scored, rel, digest, result, serving)
            for (rel, digest, result), error in zip(group, refused, strict=True)
            if error is None]
    if errors := [error for error in refused if error is not None]:
        raise errors[0]
    return done


def settle(scored: ScoredSource, rel: str, digest: str, result: PartitionScore,
           serving: Serving) -> dict:
    """Put a partition whose keys are checked in place and record it; returns its state
    entry with ``partition`` and ``flagged``."""
    entry = scored.commit(rel, digest, result, serving)
    logger.info("Scored %s: %d rows, %d flagged, with %s -> %s", rel, result.rows,
                result.flagged, serving.version, scored.target(rel))
    return {"partition": rel, "flagged": result.flagged, **entry}
