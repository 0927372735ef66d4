"""The registry on object storage (``s3://bucket/prefix``): the guarantees of the folder
registry (:mod:`tasks.registry.store`) with no lock.

- **Versions are immutable.** A version id is claimed first (``versions/<id>/.claim``, created
  with ``If-None-Match: *``: two runs never share an id); its files are assembled and signed
  in a local staging folder, then uploaded, ``signature.json`` (the signed manifest) last. A
  version is listed only once that manifest is there, and every read checks it and the
  sha256 of each file before use, so a run killed mid-upload leaves nothing listed (its claimed
  id is skipped).
- **The champion moves by compare-and-swap** (:mod:`tasks.registry.object_champion`): a
  candidate compared with a champion that another run replaced meanwhile is ``stale``, and
  its swap, which would fail, is not attempted; a swap that fails is recorded ``stale`` too.
- **History** is one immutable object per event, chained and sealed as on disk; the
  registry's identity is created once (``If-None-Match: *``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

from schemas.errors import RegistryError
from schemas.statuses import PENDING
from tasks.registry import signing
from tasks.registry.champion import now_iso, outcome_reason
from tasks.registry.object_champion import ObjectChampionLog, StaleMove
from tasks.registry.signed_records import Trust
from tasks.registry.store import (
    _AUTO,
    ANY,
    VERSION_PATTERN,
    Published,
    Registry,
    check_model_name,
)
from tasks.registry.versions import METADATA_FILE, registration_id, write_files
from tasks.runtime.object_store import StorePath, open_store

logger = logging.getLogger(__name__)

CLAIM_FILE = ".claim"
CLAIM_ATTEMPTS = 50


class ObjectRegistry(Registry):
    """One model name's versions, champion pointer and history under an object-store URL."""

    def __init__(self, root, name: str, *, key=_AUTO):
        check_model_name(name)
        self.store = open_store(root)
        self.root = StorePath(self.store)
        self.name = name
        self.dir = self.root / name
        self.versions_dir = self.dir / "versions"
        self.trust = Trust(self.root, name, lambda: self.key)
        self.log = ObjectChampionLog(self.store, name, self.trust)
        self.champion_path = self.log.champion_path
        self.history_path = self.log.history_path
        self._key = key

    @contextlib.contextmanager
    def lock(self):
        """No lock on object storage: writes are conditional. Gives a fresh registry its
        identity and appends a move a killed writer left out of history."""
        self.trust.ensure_identity()
        self.log.repair()
        yield

    def _version_keys(self) -> dict[str, set[str]]:
        """Each version-like id under versions/ and the names of its objects."""
        found: dict[str, set[str]] = {}
        prefix = f"{self.name}/versions/"
        for key in self.store.list(prefix):
            version, _, rest = key[len(prefix):].partition("/")
            if VERSION_PATTERN.fullmatch(version):
                found.setdefault(version, set()).add(rest)
        return found

    def version_ids(self) -> list[str]:
        """Versions whose signed manifest is there (unsigned ones: their metadata, written
        last, when the operator allows unsigned versions), oldest first."""
        marker = signing.SIGNATURE_FILE
        ids = [v for v, names in self._version_keys().items()
               if marker in names or (signing.allow_unsigned() and METADATA_FILE in names)]
        return sorted(ids, key=lambda v: int(v[1:]))

    def _next_version_id(self) -> str:
        """Claim the next free id (``If-None-Match: *``): complete, partial or claimed ids
        are skipped, never shared."""
        taken = [int(v[1:]) for v in self._version_keys()]
        number = max(taken, default=0) + 1
        for _ in range(CLAIM_ATTEMPTS):
            version = f"v{number:04d}"
            claim = f"{self.name}/versions/{version}/{CLAIM_FILE}"
            if self.store.put_if_absent(claim, now_iso().encode()):
                return version
            number += 1
        raise RegistryError(f"registry {str(self.root)!r}: {CLAIM_ATTEMPTS} version ids were "
                            "claimed by other runs at once; run again")

    def _assemble(self, version: str, model, meta: dict, reference, card, train_rows,
                  files=None) -> None:
        """Write and sign the version in a local staging folder, then upload it with the
        signed manifest last: until that object is there the version is not listed."""
        with tempfile.TemporaryDirectory(prefix="rareflow-staging-") as tmp:
            staging = Path(tmp) / version
            staging.mkdir()
            write_files(staging, model=model, meta=meta, reference=reference, card=card,
                        train_rows=train_rows, extra=files)
            self.files(version, folder=staging).sign()
            last = (METADATA_FILE, signing.SIGNATURE_FILE)
            names = sorted(p.name for p in staging.iterdir() if p.is_file())
            for name in [n for n in names if n not in last] + [n for n in last if n in names]:
                self.store.write(f"{self.name}/versions/{version}/{name}",
                                 (staging / name).read_bytes())

    def publish(self, model, metadata: dict, *, reference=None, card=None, train_rows=None,
                files=None, compared_with=ANY, promote_reason=None,
                run_id=None) -> Published:
        """As :meth:`Registry.publish`; the promotion is a compare-and-swap against the
        champion read before the version was assembled (a failed swap: ``stale``)."""
        self.check_can_sign()
        reg_id = registration_id(metadata, run_id) if run_id else None
        with self.lock():
            done = self._find_registration(reg_id) if reg_id else None
            if done is not None:
                return self._finish_retry(done, compared_with, promote_reason)
            current = (self.champion() or {}).get("version")  # remembers the pointer's tag
            version = self._next_version_id()
            meta = {**metadata, "name": self.name, "version": version,
                    "registered_at": now_iso(), **({"registration_id": reg_id} if reg_id
                                                   else {})}
            verdict = dict(meta.get("verdict") or {})
            if verdict.get("status") in ("passed", PENDING) \
                    and compared_with is not ANY and current != compared_with:
                verdict.update(status="stale", stale={
                    "compared_with": compared_with, "champion_at_registration": current,
                    "detail": "another run changed the champion while this one trained"})
                meta["verdict"] = verdict
            self._assemble(version, model, meta, reference, card, train_rows, files)
            logger.info("Registered %s %s in %s", self.name, version, self.root)
            status = verdict.get("status", "?")
            if promote_reason and status == "passed":
                try:
                    self.log.move(version, action="promote", reason=promote_reason,
                                  forced=False, name=self.name, status=status)
                    return Published(version, status, version)
                except StaleMove:
                    status, verdict = "stale", {**verdict, "status": "stale", "stale": {
                        "detail": "another run moved the champion during the registration"}}
                    current = (self.champion() or {}).get("version")
            if status != "passed":
                self.log.note(version, action="register", status=status,
                              reason=outcome_reason(verdict))
            return Published(version, status, current)

