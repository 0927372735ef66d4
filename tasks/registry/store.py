"""A versioned model registry in a local folder: signed immutable versions, an atomic champion
pointer.

Layout::

    <root>/<name>/versions/<version>/  model.joblib, metadata.json, model_card.md, plots,
                                       reference.parquet, train_rows.npy, signature.json, reports/
    <root>/<name>/champion.json        which version serves (temp file + os.replace, under a lock)
    <root>/<name>/history.jsonl        append-only: champion moves, unpromoted candidates, decisions

A version is assembled under a hidden name and renamed into place, under the registry's lock
(``filelock``: fcntl on POSIX, msvcrt on Windows): a listed version is always complete, and a
hidden leftover the next lock holder finds is a dead writer's, removed (no process ids: they
mean nothing on a shared drive). Versions are signed (:mod:`tasks.registry.signing`) and checked
before anything is unpickled.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import NAME_PATTERN, check_name
from schemas.errors import RegistryError
from schemas.statuses import PENDING
from tasks.registry import signing
from tasks.registry.champion import ChampionLog, StaleChampion, now_iso, outcome_reason
from tasks.registry.signed_records import Trust
from tasks.registry.versions import (  # the file names are re-exported for callers
    CARD_FILE,  # noqa: F401
    METADATA_FILE,
    MODEL_FILE,
    REFERENCE_FILE,
    TRAIN_ROWS_FILE,
    VersionFiles,
    load_stored,
    registration_id,
    write_files,
)
from tasks.runtime.durable_files import fsync_dir
from tasks.runtime.io_retries import IO_RETRIES
from tasks.runtime.object_store_api import is_remote, local_path

logger = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^v\d{4,9}$")
ANY = "<any>"  # promote(expected_champion=ANY): do not check which version is champion
LOCK_FILE = ".lock"
STAGING_PREFIX = ".tmp-"
_AUTO = object()


@dataclass(frozen=True)
class Published:
    """What registering a candidate did: its id, its final status, the champion after it."""

    version: str
    status: str
    champion: str | None


def check_version_id(version: str) -> str:
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise RegistryError(f"version id must look like 'v0001' (or be 'champion' or "
                            f"'latest'); got {version!r}")
    return version


def check_model_name(name: str) -> None:
    """A registry's model name: one line of letters, digits, '_', '-' or '.'.

    Raises:
        RegistryError: naming the name.
    """
    try:
        check_name(name)
    except ValueError as exc:
        raise RegistryError(str(exc)) from exc
    if not NAME_PATTERN.fullmatch(name):  # the pattern's '$' also matches before a '\n'
        raise RegistryError(f"model name must be one line of letters, digits, '_', '-' or "
                            f"'.'; got {name!r}")


class Registry:
    """One model name's versions, champion pointer and history under a root folder.

    Args:
        key: The signing key; by default the one configured in the environment
            (:func:`tasks.registry.signing.signing_key`), read when first needed.
    """

    def __init__(self, root: str | Path, name: str, *, key=_AUTO):
        check_model_name(name)
        if is_remote(root):
            raise RegistryError(f"registry {str(root)!r} is in object storage: open it with "
                                "tasks.registry.open_registry.open_registry")
        self.root = local_path(root)  # a path or a file:// URL
        self.name = name
        self.dir = self.root / name
        self.versions_dir = self.dir / "versions"
        self.trust = Trust(self.root, name, lambda: self.key)  # signed pointer, history, state
        self.log = ChampionLog(self.dir, self.trust)
        self.champion_path = self.log.champion_path
        self.history_path = self.log.history_path
        self._key = key

    @property
    def key(self) -> signing.SigningKey | None:
        if self._key is _AUTO:
            self._key = signing.signing_key()
        return self._key

    # -- locking ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """An exclusive inter-process lock on this model's registry entry (not re-entrant)."""
        try:
            self.versions_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise RegistryError(f"registry {str(self.root)!r} is not a directory: {exc}") from exc
        except PermissionError as exc:
            raise RegistryError(f"registry {str(self.root)!r} is not writable: {exc}") from exc
        with FileLock(self.dir / LOCK_FILE):
            self.trust.ensure_identity()
            self._repair()
            yield

    def _repair(self) -> None:
        """Finish what a crash interrupted: a champion move missing from history, a half
        assembled version (staging happens under this lock: its writer is gone)."""
        self.log.repair()
        for leftover in self.versions_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    # -- versions --------------------------------------------------------------------------
    def version_dir(self, version: str) -> Path:
        return self.versions_dir / check_version_id(version)

    def version_ids(self) -> list[str]:
        """Complete versions, oldest first (hidden temporaries and stray files ignored)."""
        if not self.versions_dir.is_dir():
            return []
        ids = [
            p.name
            for p in self.versions_dir.iterdir()
            if p.is_dir() and VERSION_PATTERN.fullmatch(p.name) and (p / METADATA_FILE).is_file()
        ]
        return sorted(ids, key=lambda v: int(v[1:]))

    def register(self, model, metadata: dict, **files) -> str:
        """Store a trained candidate as a new immutable, signed version and return its id
        (``files``: :meth:`publish`'s reference, card, train_rows and files)."""
        return self.publish(model, metadata, **files).version

    def publish(self, model, metadata: dict, *, reference: pd.DataFrame | None = None,
                card: str | None = None, train_rows: np.ndarray | None = None,
                files: dict[str, bytes] | None = None, compared_with: str | None = ANY,
                promote_reason: str | None = None, run_id: str | None = None) -> Published:
        """Register a candidate and, if its verdict passed, promote it, under one lock.

        A candidate whose verdict passed (or is pending a manual approval) but whose champion
        changed since the comparison (``compared_with``) is registered with status ``stale``:
        its metadata, which never changes afterwards, says so. A candidate not promoted gets a
        ``register`` record in history with its status. A retry of the same registration
        (same metadata and ``run_id``) returns what the first attempt did instead of adding a
        version.
        ``files`` are more files of the version (e.g. plots) by plain file name, signed with
        the rest.
        """
        self.check_can_sign()
        reg_id = registration_id(metadata, run_id) if run_id else None
        with self.lock():
            done = self._find_registration(reg_id) if reg_id else None
            if done is not None:
                return self._finish_retry(done, compared_with, promote_reason)
            current = (self.champion() or {}).get("version")
            version = self._next_version_id()
            meta = {**metadata, "name": self.name, "version": version,
                    "registered_at": now_iso()}
            if reg_id:
                meta["registration_id"] = reg_id
            verdict = dict(meta.get("verdict") or {})
            if verdict.get("status") in ("passed", PENDING) and compared_with is not ANY \
                    and current != compared_with:
                verdict.update(status="stale", stale={
                    "compared_with": compared_with, "champion_at_registration": current,
                    "detail": "another run changed the champion while this one trained"})
                meta["verdict"] = verdict
                logger.warning("Not promoted: the champion changed from %s to %s after %s was "
                               "compared with it; train again to compare with %s",
                               compared_with, current, version, current)
            self._assemble(version, model, meta, reference, card, train_rows, files)
            logger.info("Registered %s %s", self.name, version)
            status = verdict.get("status", "?")
            if promote_reason and status == "passed":
                self.log.move(version, action="promote", reason=promote_reason, forced=False,
                              name=self.name, status=status)
                current = version
            elif status != "passed":  # history keeps every candidate the flow did not promote
                self.log.note(version, action="register", status=status,
                              reason=outcome_reason(verdict))
            return Published(version, status, current)

    def _assemble(self, version: str, model, meta: dict, reference, card, train_rows,
                  files=None) -> None:
        """Write a version's files under a hidden name, sign them, rename into place."""
        staging = self.versions_dir / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            write_files(staging, model=model, meta=meta, reference=reference, card=card,
                        train_rows=train_rows, extra=files)
            self.files(version, folder=staging).sign()
            fsync_dir(staging)
            os.rename(staging, self.versions_dir / version)
            fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def files(self, version: str, *, folder: Path | None = None) -> VersionFiles:
        """A version's files, read verified."""
        return VersionFiles(folder or self.version_dir(version), name=self.name,
                            version=version, key=self.key, registry_id=self.trust.identity)

    def check_can_sign(self) -> None:
        """Refuse to write a version that could not be signed (before any work is done)."""
        if self.key is None and not signing.allow_unsigned():
            raise RegistryError(f"no signing key is configured, so {self.name} versions cannot "
                                f"be signed: {signing.NO_KEY_HELP} (or set "
                                f"{signing.ALLOW_UNSIGNED_ENV}=1 to write unsigned versions)")

    def _find_registration(self, reg_id: str) -> dict | None:
        for version in self.version_ids()[-3:]:
            with contextlib.suppress(RegistryError):
                meta = self.metadata(version)
                if meta.get("registration_id") == reg_id:
                    return meta
        return None

    def _finish_retry(self, meta: dict, compared_with, promote_reason) -> Published:
        """A retried registration: report (and finish) what the first attempt did."""
        version, status = meta["version"], meta.get("verdict", {}).get("status", "?")
        current = (self.champion() or {}).get("version")
        if promote_reason and status == "passed" and current != version:
            if compared_with is ANY or current == compared_with:
                self.log.move(version, action="promote", reason=promote_reason, forced=False,
                              name=self.name, status=status)
                current = version
            else:
                status = "stale"
        return Published(version, status, current)

    def _next_version_id(self) -> str:
        """One past the highest version-like name in versions/, complete or not.

        A stray file or an incomplete folder named like a version is skipped, never
        overwritten by the rename that publishes a new version.
        """
        taken = [int(p.name[1:]) for p in self.versions_dir.iterdir()
                 if VERSION_PATTERN.fullmatch(p.name)]
        return f"v{max(taken, default=0) + 1:04d}"

    def metadata(self, version: str) -> dict:
        """A version's metadata as stored (not verified: see :meth:`verify`)."""
        path = self.version_dir(version) / METADATA_FILE
        if not path.is_file():
            raise RegistryError(
                f"model {self.name!r} has no version {version!r} in {str(self.dir)!r}; "
                f"versions: {self.version_ids() or 'none'}"
            )
        return self.files(version).parse_metadata(path.read_bytes())

    def resolve(self, version: str) -> str:
        """Turn 'champion', 'latest' or an id into an existing version id."""
        pointed = version == "champion"  # a pointer to a missing version is named as such
        if pointed:
            if not (champion := self.champion()):
                raise RegistryError(f"model {self.name!r} in {str(self.root)!r} has no champion "
                                    "yet; train one or pass --version latest")
            version = champion["version"]
        elif version == "latest":
            ids = self.version_ids()
            if not ids:
                raise RegistryError(f"model {self.name!r} in {str(self.root)!r} has no versions")
            return ids[-1]
        check_version_id(version)
        if version not in self.version_ids():
            raise RegistryError(
                f"model {self.name!r} has no version {version!r}"
                f"{' (the champion pointer names it: roll back or promote)' if pointed else ''}"
                f"; versions: {self.version_ids() or 'none'}")
        return version

    # -- verified reads ----------------------------------------------------------------------
    def verify(self, version: str) -> dict:
        """Check a version's signature and every file it covers; return its metadata."""
        version = self.resolve(version)
        return self.files(version).verify()

    def load(self, version: str = "champion"):
        """Load a version's model after checking its signature and sha256s; returns
        (model, metadata). Nothing is unpickled before the checks pass."""
        version = self.resolve(version)
        files = self.files(version)
        blobs = files.read((MODEL_FILE,))
        meta = files.parse_metadata(blobs[METADATA_FILE])
        # older formats become the served classifier
        return load_stored(io.BytesIO(blobs[MODEL_FILE]), meta), meta

    def reference(self, version: str) -> pd.DataFrame:
        """The version's reference predictions on its test rows (verified)."""
        version = self.resolve(version)
        if not (self.version_dir(version) / REFERENCE_FILE).is_file():
            raise RegistryError(f"{self.name} {version} has no reference data for monitoring")
        blobs = self.files(version).read((REFERENCE_FILE,))
        return pd.read_parquet(io.BytesIO(blobs[REFERENCE_FILE]))

    def train_rows(self, version: str) -> np.ndarray | None:
        """The content hashes of the rows a version trained on (verified); None if it has
        none (versions written before row fingerprints were kept)."""
        version = self.resolve(version)
        if not (self.version_dir(version) / TRAIN_ROWS_FILE).is_file():
            return None
        blobs = self.files(version).read((TRAIN_ROWS_FILE,))
        return np.load(io.BytesIO(blobs[TRAIN_ROWS_FILE]), allow_pickle=False)

    # -- champion and history --------------------------------------------------------------
    def champion(self) -> dict | None:
        """The champion pointer (``version``, ``since``, ...), or None before the first."""
        return self.log.champion()

    def history(self) -> list[dict]:
        """Champion moves, candidates not promoted and decisions, oldest first."""
        return self.log.history()

    def champion_stack(self) -> list[str]:
        """Champions in order of service: promotions push, rollbacks pop."""
        return self.log.stack()

    def served_at(self, when) -> dict | None:
        """The history entry of the champion move in force at ``when`` (None: none yet)."""
        return self.log.served_at(when)

    def promote(self, version: str, *, reason: str, forced: bool = False,
                require_passed: bool = True, expected_champion: str | None = ANY) -> dict:
        """Make ``version`` the champion after verifying its signature and files.

        A version whose status is not ``passed`` (rejected, refused, stale) is refused unless
        ``forced``; the move is recorded with its status, the actor and the reason.

        Args:
            expected_champion: The champion the candidate was compared with (None: there was
                none). When given, the promotion is refused if another run has changed the
                champion since, so a candidate never replaces one it was not compared with.
        """
        with self.lock():
            pointer = self.champion() or {}
            current = pointer.get("version")
            if expected_champion is not ANY and current != expected_champion:
                moved = pointer.get("history_entry") or {}
                if current == version and moved.get("previous") == expected_champion:
                    return moved  # a retry of this very promotion: it already happened
                raise StaleChampion(current,
                    f"{self.name}: the champion changed from {expected_champion} to {current} "
                    f"after {version} was compared with it; train again to compare with "
                    f"{current}")
            version = self.resolve(version)
            meta = self.verify(version)
            status = self.log.status(version, meta.get("verdict", {}).get("status"))
            if require_passed and status != "passed" and not forced:
                raise RegistryError(
                    f"{self.name} {version} did not pass its gates (status {status!r}"
                    + (": the champion changed while it trained" if status == "stale" else "")
                    + (": approve it with `rareflow models approve`" if status == PENDING else "")
                    + "); pass --force to promote it anyway (recorded in history)")
            decided = {"decision": "approved", "how": "by a forced promotion"} \
                if status == PENDING else {}  # it passed every gate: forcing approves it
            return self.log.move(version, action="promote", reason=reason, forced=forced,
                                 name=self.name, status="passed" if decided else status,
                                 **decided)

    def rollback(self, *, reason: str = "rollback") -> dict:
        """Make the champion before the current one serve again (after verifying it)."""
        with self.lock():
            current = self.champion()
            if not current:
                raise RegistryError(f"model {self.name!r} has no champion to roll back")
            stack = self.log.stack()
            if len(stack) < 2:
                raise RegistryError(f"model {self.name!r} has no earlier champion to roll back to")
            meta = self.verify(stack[-2])
            return self.log.move(stack[-2], action="rollback", reason=reason, forced=False,
                                 name=self.name, status=meta.get("verdict", {}).get("status"))

    def summaries(self) -> pd.DataFrame:
        """One row per version: verdict, signature and key metrics."""
        from tasks.registry.compare import version_summaries

        return version_summaries(self)


@task(name="register", cache_policy=NO_CACHE, **IO_RETRIES)
def register_task(registry: Registry, model, metadata: dict, reference: pd.DataFrame | None,
                  card: str | None, files: dict[str, bytes] | None = None, *,
                  train_rows: np.ndarray | None = None,
                  compared_with: str | None = ANY) -> Published:
    """Store the candidate, signed, and promote it if every gate passed and the champion is
    still the one it was compared with (I/O: retried; a retry never adds a second version)."""
    from prefect.runtime import flow_run

    return registry.publish(model, metadata, reference=reference, card=card, files=files,
                            train_rows=train_rows, compared_with=compared_with,
                            promote_reason="passed every gate", run_id=flow_run.get_id())

