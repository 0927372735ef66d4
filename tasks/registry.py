"""A versioned model registry in a local folder: immutable versions, an atomic champion pointer.

Layout::

    <root>/<name>/versions/<version>/  model.joblib, metadata.json, model_card.md,
                                       reference.parquet, reports/
    <root>/<name>/champion.json        which version serves (temp file + os.replace, under a lock)
    <root>/<name>/history.jsonl        append-only promotions and rollbacks

A version directory is assembled under a hidden temporary name and renamed into place, so a
listed version is always complete; a crash leaves at most a hidden leftover, removed later.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

import joblib
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import NAME_PATTERN, check_name
from schemas.errors import IntegrityError, RegistryError
from tasks.champion import ChampionLog, now_iso
from tasks.files import fsync_dir, fsync_file, sha256_file, write_json
from tasks.lean import reproducible_pickling
from tasks.load import IO_RETRIES
from tasks.served import load_stored

logger = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^v\d{4,9}$")
ANY = "<any>"  # promote(expected_champion=ANY): do not check which version is champion
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CARD_FILE = "model_card.md"
REFERENCE_FILE = "reference.parquet"


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class StaleChampion(RegistryError):
    """Another run changed the champion after the candidate was compared with it."""

    def __init__(self, current: str | None, message: str):
        super().__init__(message)
        self.current = current


def check_file_name(name: str) -> str:
    """A version's extra file name: one plain name, not one of the registry's own files."""
    if (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or ".." in name
            or name in (MODEL_FILE, METADATA_FILE, CARD_FILE, REFERENCE_FILE)):
        raise RegistryError(f"a version's extra file needs a plain name of letters, digits, "
                            f"'_', '-' or '.' that is not a registry file; got {name!r}")
    return name


def check_version_id(version: str) -> str:
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise RegistryError(
            f"version id must look like 'v0001' (or be 'champion' or 'latest'); got {version!r}"
        )
    return version


class Registry:
    """One model name's versions, champion pointer and history under a root folder."""

    def __init__(self, root: str | Path, name: str):
        try:
            check_name(name)
        except ValueError as exc:
            raise RegistryError(str(exc)) from exc
        if not NAME_PATTERN.fullmatch(name):  # the pattern's '$' also matches before a '\n'
            raise RegistryError(f"model name must be one line of letters, digits, '_', '-' or "
                                f"'.'; got {name!r}")
        self.root = Path(root)
        self.name = name
        self.dir = self.root / name
        self.versions_dir = self.dir / "versions"
        self.log = ChampionLog(self.dir)
        self.champion_path = self.log.champion_path
        self.history_path = self.log.history_path

    # -- locking ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """An exclusive inter-process lock on this model's registry entry."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                self._repair()
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _repair(self) -> None:
        """Finish what a crash interrupted: a champion move missing from history, a half
        assembled version whose writer died."""
        self.log.repair()
        for leftover in self.versions_dir.glob(".tmp-*"):
            if not _pid_alive(leftover.name.split("-")[1]):  # its writer died mid-way
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

    def register(self, model, metadata: dict, *, reference: pd.DataFrame | None = None,
                 card: str | None = None, files: dict[str, bytes] | None = None) -> str:
        """Store a trained candidate as a new immutable version and return its id.

        Args:
            files: More files of the version (e.g. plots), by plain file name; written
                before the version is published, their sha256 recorded in ``files``.
        """
        extra = dict(files or {})
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = self.versions_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            model_path = staging / MODEL_FILE
            # the same model always gives the same bytes; the model itself is not touched
            with open(model_path, "wb") as fh, reproducible_pickling():
                joblib.dump(model, fh, compress=3)
                fh.flush()
                os.fsync(fh.fileno())
            files = {MODEL_FILE: sha256_file(model_path)}
            if reference is not None:
                ref_path = staging / REFERENCE_FILE
                reference.to_parquet(ref_path, index=False)
                files[REFERENCE_FILE] = sha256_file(ref_path)
            for file_name, content in extra.items():
                check_file_name(file_name)
                (staging / file_name).write_bytes(content)
                files[file_name] = sha256_file(staging / file_name)
            (staging / "reports").mkdir()
            with self.lock():
                version = self._next_version_id()
                meta = {**metadata, "name": self.name, "version": version,
                        "registered_at": now_iso(), "sha256": files[MODEL_FILE], "files": files}
                if card is not None:
                    text = card.replace("{version}", version)
                    (staging / CARD_FILE).write_text(text, encoding="utf-8")
                write_json(staging / METADATA_FILE, meta)
                for path in staging.iterdir():
                    if path.is_file():
                        fsync_file(path)
                fsync_dir(staging)
                os.rename(staging, self.versions_dir / version)
                fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("Registered %s %s", self.name, version)
        return version

    def _next_version_id(self) -> str:
        """One past the highest version-like name in versions/, complete or not.

        A stray file or an incomplete folder named like a version is skipped, never
        overwritten by the rename that publishes a new version.
        """
        taken = [int(p.name[1:]) for p in self.versions_dir.iterdir()
                 if VERSION_PATTERN.fullmatch(p.name)]
        return f"v{max(taken, default=0) + 1:04d}"

    def metadata(self, version: str) -> dict:
        path = self.version_dir(version) / METADATA_FILE
        if not path.is_file():
            raise RegistryError(
                f"model {self.name!r} has no version {version!r} in {str(self.dir)!r}; "
                f"versions: {self.version_ids() or 'none'}"
            )
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IntegrityError(f"metadata of {self.name} {version} is corrupt: {exc}") from exc

    def resolve(self, version: str) -> str:
        """Turn 'champion', 'latest' or an id into an existing version id."""
        if version == "champion":
            champion = self.champion()
            if not champion:
                raise RegistryError(
                    f"model {self.name!r} in {str(self.root)!r} has no champion yet; train one "
                    "or pass --version latest"
                )
            return champion["version"]
        if version == "latest":
            ids = self.version_ids()
            if not ids:
                raise RegistryError(f"model {self.name!r} in {str(self.root)!r} has no versions")
            return ids[-1]
        check_version_id(version)
        if version not in self.version_ids():
            raise RegistryError(
                f"model {self.name!r} has no version {version!r}; versions: "
                f"{self.version_ids() or 'none'}"
            )
        return version

    def load(self, version: str = "champion"):
        """Load a version's model after checking its sha256; returns (model, metadata)."""
        version = self.resolve(version)
        meta = self.metadata(version)
        path = self.version_dir(version) / MODEL_FILE
        if not path.is_file():
            raise IntegrityError(f"{self.name} {version}: {MODEL_FILE} is missing")
        actual = sha256_file(path)
        if actual != meta.get("sha256"):
            raise IntegrityError(
                f"{self.name} {version}: {MODEL_FILE} does not match its recorded sha256 "
                f"(expected {str(meta.get('sha256'))[:12]}…, found {actual[:12]}…); the file "
                "was changed or truncated: refusing to load it"
            )
        return load_stored(path, meta), meta  # older formats become the served classifier

    def reference(self, version: str) -> pd.DataFrame:
        """The version's reference predictions on its test rows (checksum verified)."""
        meta = self.metadata(version)
        path = self.version_dir(version) / REFERENCE_FILE
        expected = meta.get("files", {}).get(REFERENCE_FILE)
        if not path.is_file() or expected is None:
            raise RegistryError(f"{self.name} {version} has no reference data for monitoring")
        if sha256_file(path) != expected:
            raise IntegrityError(f"{self.name} {version}: {REFERENCE_FILE} fails its sha256")
        return pd.read_parquet(path)

    # -- champion and history --------------------------------------------------------------
    def champion(self) -> dict | None:
        """The champion pointer (``version``, ``since``, ...), or None before the first."""
        return self.log.champion()

    def history(self) -> list[dict]:
        """Promotion and rollback records, oldest first."""
        return self.log.history()

    def champion_stack(self) -> list[str]:
        """Champions in order of service: promotions push, rollbacks pop."""
        return self.log.stack()

    def promote(self, version: str, *, reason: str, forced: bool = False,
                require_passed: bool = True, expected_champion: str | None = ANY) -> dict:
        """Make ``version`` the champion; refuses a version whose gates failed unless forced.

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
                    f"{current}"
                )
            version = self.resolve(version)
            meta = self.metadata(version)
            status = meta.get("verdict", {}).get("status")
            if require_passed and status != "passed" and not forced:
                raise RegistryError(
                    f"{self.name} {version} did not pass its gates (status {status!r}); "
                    "pass --force to promote it anyway (recorded in history)"
                )
            return self.log.move(version, action="promote", reason=reason, forced=forced,
                                 name=self.name)

    def rollback(self, *, reason: str = "rollback") -> dict:
        """Make the champion before the current one serve again."""
        with self.lock():
            current = self.champion()
            if not current:
                raise RegistryError(f"model {self.name!r} has no champion to roll back")
            stack = self.log.stack()
            if len(stack) < 2:
                raise RegistryError(f"model {self.name!r} has no earlier champion to roll back to")
            return self.log.move(stack[-2], action="rollback", reason=reason, forced=False,
                                 name=self.name)

    def summaries(self) -> pd.DataFrame:
        """One row per version: verdict and key metrics."""
        champion = (self.champion() or {}).get("version")
        rows = []
        for version in self.version_ids():
            try:
                meta = self.metadata(version)
            except RegistryError as exc:
                rows.append({"version": version, "status": f"unreadable: {exc}"})
                continue
            test = meta.get("metrics", {})
            at = test.get("at_threshold", {})
            rows.append({
                "version": version,
                "champion": "*" if version == champion else "",
                "status": meta.get("verdict", {}).get("status", "?"),
                "strategy": meta.get("strategy", {}).get("name", "?"),
                "threshold": at.get("threshold"),
                "recall": at.get("recall"),
                "pr_auc": test.get("pr_auc"),
                "normalised_cost": at.get("normalised_cost"),
                "registered_at": meta.get("registered_at"),
            })
        return pd.DataFrame(rows)


@task(name="register", cache_policy=NO_CACHE, **IO_RETRIES)
def register_task(registry: Registry, model, metadata: dict, reference: pd.DataFrame,
                  card: str, files: dict[str, bytes] | None = None) -> str:
    """Store the candidate (I/O: retried on transient errors)."""
    return registry.register(model, metadata, reference=reference, card=card, files=files)


@task(name="promote", cache_policy=NO_CACHE, **IO_RETRIES)
def promote_task(registry: Registry, version: str, reason: str,
                 expected_champion: str | None = ANY) -> dict:
    """Make a version that passed its gates the champion (I/O: retried)."""
    return registry.promote(version, reason=reason, expected_champion=expected_champion)


def promote_if_passed(registry: Registry, version: str, *, status: str,
                      compared_with: str | None) -> tuple[str, str | None]:
    """Promote a version whose gates passed, unless the champion moved since the comparison.

    Returns:
        (final status: passed, rejected, refused or stale; the champion now)
    """
    if status != "passed":
        return status, compared_with
    try:  # refused if a concurrent run changed the champion it was compared with
        promote_task(registry, version, reason="passed every gate",
                     expected_champion=compared_with)
    except StaleChampion as exc:
        logger.warning("Not promoted: %s", exc)
        return "stale", exc.current
    return "passed", version
