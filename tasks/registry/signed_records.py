"""Signed records of a registry: its identity, the champion pointer, history and monitoring
state, each carrying an HMAC under the signing key (a MAC over the record, the registry's
identity and the model name, with a ``kind`` so a record of one kind never passes for another).

What decides which model is served must not be editable by someone who can write the registry
folder but cannot read the key:

- **Identity.** ``<registry>/.rareflow-registry.json`` holds a random ``registry_id``, signed.
  Every version signature made since covers it (:func:`tasks.registry.signing.sign`), so a version
  copied from another registry, signed with the same key, is refused.
- **Champion pointer.** ``champion.json`` is sealed with a sequence number and the previous
  pointer's MAC; an edited pointer is refused, and one older than history's last move (a
  replayed copy) too.
- **History.** Each ``history.jsonl`` entry carries the previous entry's MAC and its own: a
  forged, edited or unsigned line is skipped and named by its line number, a missing one
  reported, and only verified moves decide ``rollback`` and ``history --at``.
- **Monitoring state.** ``monitor_state.json`` is sealed: an edited state (say, a
  ``checked_until`` in 2099 that silences every alarm) is refused.

A registry written before identities existed ("legacy") has none of this until
``rareflow models sign`` upgrades it in place with the key
(:func:`tasks.registry.sign_existing.upgrade_registry`); until
then its records are read as before. A fresh registry gets its identity when first written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import uuid
from pathlib import Path

from schemas.errors import IntegrityError
from tasks.registry.signing import key_hint
from tasks.runtime.durable_files import dumps, fsync_dir, write_bytes_atomic
from tasks.runtime.object_store import StorePath, as_path

logger = logging.getLogger(__name__)

IDENTITY_FILE = ".rareflow-registry.json"
MAC = "mac"
PREV = "prev_mac"


def _canonical(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def _mac(secret: bytes, kind: str, scope: dict, body: dict) -> str:
    payload = {"kind": kind, "scope": scope, "body": {k: v for k, v in body.items() if k != MAC}}
    return hmac.new(secret, _canonical(payload), hashlib.sha256).hexdigest()


class Trust:
    """Sealing and checking of one model's records (see the module's docstring).

    ``key`` is a callable returning the :class:`tasks.registry.signing.SigningKey` (or None), read
    when first needed, as the registry reads it.
    """

    def __init__(self, root: Path, name: str, key):
        self.root, self.name, self._key = as_path(root), name, key
        self._identity: str | None | bool = False  # False: not read yet

    @property
    def key(self):
        return self._key()

    @property
    def identity(self) -> str | None:
        """The registry's verified id (None: a legacy registry without one)."""
        if self._identity is False:
            self._identity = read_identity(self.root, self.key)
        return self._identity

    def forget_identity(self) -> None:
        """Read the identity again when next needed (after it was created)."""
        self._identity = False

    @property
    def enforced(self) -> bool:
        """Whether records must be sealed: the registry has an identity and a key is set."""
        return self.key is not None and self.identity is not None

    def scope(self) -> dict:
        return {"registry": self.identity, "name": self.name}

    def seal(self, kind: str, body: dict) -> dict:
        """``body`` with its MAC (unchanged when records are not sealed here)."""
        if not self.enforced:
            return body
        return {**body, MAC: _mac(self.key.secret, kind, self.scope(), body)}

    def valid(self, kind: str, body: dict) -> bool:
        """Whether ``body`` carries a MAC made here for ``kind`` (True when not enforced)."""
        if not self.enforced:
            return True
        given = body.get(MAC)
        return isinstance(given, str) and hmac.compare_digest(
            given, _mac(self.key.secret, kind, self.scope(), body))

    def check(self, kind: str, body: dict, *, where: str, fix: str) -> dict:
        """``body`` if it is sealed here, else an IntegrityError naming ``where`` and ``fix``."""
        if not self.valid(kind, body):
            why = "is not signed" if MAC not in body else "does not match its signature"
            raise IntegrityError(f"{where} {why} (edited, replayed or written without the key): "
                                 f"refusing to use it; {fix}")
        return body

    def ensure_identity(self) -> None:
        """Give a fresh registry (no model written yet) its identity; legacy ones wait for
        ``rareflow models sign``."""
        if self.key is None or self.identity is not None or not fresh_registry(self.root):
            return
        self._identity = create_identity(self.root, self.key)


def fresh_registry(root: Path) -> bool:
    """Whether no model has been written under ``root`` yet (no versions, no pointer)."""
    if isinstance(root, StorePath):  # one listing
        parts = [key.split("/") for key in root.store.list()]
        return not any(p[1:] == ["champion.json"] or (len(p) > 3 and p[1] == "versions"
                                                     and not p[2].startswith("."))
                       for p in parts)
    if not root.is_dir():
        return True
    for model in root.iterdir():
        if model.is_dir() and ((model / "champion.json").exists() or (
                (model / "versions").is_dir() and any(
                    p for p in (model / "versions").iterdir() if not p.name.startswith(".")))):
            return False
    return True


def read_identity(root: Path, key) -> str | None:
    """The registry's id from its signed identity file (None: it has none).

    Raises:
        IntegrityError: the file is unreadable, or not signed with ``key``.
    """
    path = as_path(root) / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        registry_id = str(doc["registry_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"registry identity {str(path)!r} is unreadable: restore it from "
                             "a backup") from exc
    if key is not None and not hmac.compare_digest(
            str(doc.get(MAC, "")), _mac(key.secret, "registry", {"registry": registry_id}, doc)):
        wanted = str(doc.get("key_id"))
        if wanted != key.key_id:  # the registry's key is another: say where it may be
            raise IntegrityError(f"registry {str(root)!r} is signed with another key (id "
                                 f"{wanted}) than the one in use (id {key.key_id}, from "
                                 f"{key.source}): {key_hint(as_path(root), wanted)}")
        raise IntegrityError(f"registry identity {str(path)!r} does not match its signature: "
                             "restore it from a backup")
    return registry_id


def create_identity(root: Path, key) -> str:
    """Write a new signed identity unless one exists (atomic create); return the id in force."""
    registry_id = uuid.uuid4().hex
    body = {"format": 1, "registry_id": registry_id, "key_id": key.key_id}
    doc = {**body, MAC: _mac(key.secret, "registry", {"registry": registry_id}, body)}
    if isinstance(root, StorePath):  # object storage: created once, If-None-Match: *
        if root.store.put_if_absent((root / IDENTITY_FILE).key, dumps(doc).encode()):
            logger.info("Registry %s: identity %s created", root, registry_id)
        return read_identity(root, key)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{IDENTITY_FILE}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
    write_bytes_atomic(tmp, dumps(doc).encode())
    try:
        os.link(tmp, root / IDENTITY_FILE)
        fsync_dir(root)
        logger.info("Registry %s: identity %s created", root, registry_id)
    except FileExistsError:
        pass  # another writer created it first: theirs stands
    finally:
        tmp.unlink(missing_ok=True)
    return read_identity(root, key)


def read_chain(trust: Trust, lines: list[tuple[int, dict]], *, where: str) -> list[dict]:
    """The history entries whose MAC verifies, in order; each skipped line (forged, edited,
    unsigned) and each gap in the chain (a removed line) is logged with its line number."""
    if not trust.enforced:
        return [entry for _, entry in lines]
    out, last = [], None
    for number, entry in lines:
        if not trust.valid("history", entry):
            logger.warning("%s line %d is not signed with the registry's key (forged, edited "
                           "or unsigned): skipped", where, number)
            continue
        if entry.get(PREV) != last:
            logger.warning("%s line %d does not follow the entry before it: a line was removed "
                           "before it", where, number)
        out.append(entry)
        last = entry[MAC]
    return out


def seal_entry(trust: Trust, entry: dict, previous: list[dict]) -> dict:
    """A history entry chained to the last verified one and sealed."""
    if not trust.enforced or MAC in entry:
        return entry
    return trust.seal("history", {**entry, PREV: previous[-1][MAC] if previous else None})


def check_pointer(trust: Trust, pointer: dict, moves: list[dict], *, path: Path) -> dict:
    """The champion pointer, checked: sealed here and not older than history's last move.

    A pointer whose move is not in history yet (a crash between the two writes) is valid:
    :meth:`tasks.registry.champion.ChampionLog.repair` appends its entry.
    """
    fix = ("delete it and promote the version that should serve (`rareflow models promote "
           "VERSION` with the key)")
    trust.check("champion", pointer, where=str(path), fix=fix)
    if trust.enforced and moves:
        ids = [m.get("event_id") for m in moves]
        if pointer.get("event_id") in ids and ids.index(pointer["event_id"]) < len(ids) - 1:
            raise IntegrityError(f"{path} points at {pointer.get('version')} but history moved "
                                 f"the champion since (to {moves[-1].get('version')}): it is an "
                                 f"old copy put back; {fix}")
    return pointer


def rewrite_history(trust: Trust, path: Path, entries: list[dict]) -> int:
    """Rewrite a history file with every entry chained and sealed; returns their number."""
    sealed: list[dict] = []
    for entry in entries:
        clean = {k: v for k, v in entry.items() if k not in (MAC, PREV)}
        sealed.append(seal_entry(trust, clean, sealed))
    write_bytes_atomic(path, "".join(dumps(e, indent=None) + "\n" for e in sealed).encode())
    return len(sealed)
