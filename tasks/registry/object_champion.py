"""The champion pointer and its history on object storage, moved without any lock.

``<name>/champion.json`` moves by compare-and-swap: its new content is written only while the
pointer is still the one the writer read (S3 ``If-Match`` on its ETag, ``If-None-Match: *`` for
the first; :meth:`tasks.runtime.object_store.ObjectStore.replace_if`). A writer whose swap fails
changed nothing: its move is reported :class:`StaleMove` (``stale``).

History is one immutable object per event, ``<name>/history/<seq>.json``, created with
``If-None-Match: *``: two writers that claim the same sequence number cannot both win, so the
records have one order and one MAC chain (each sealed to the one before it,
:mod:`tasks.registry.signed_records`); the loser reads the history again and appends after it.
(Keys ordered by time and a random id would need no retry, but two writers would chain to the
same predecessor and clocks of different workers would reorder moves.) Each record still
carries its time (``at``) and a unique ``event_id``; appending is idempotent by ``event_id``.

A move is written pointer first, then its history record; a writer killed between the two
leaves the record in the pointer (``history_entry``), and whoever writes next appends it
before its own move (:meth:`ObjectChampionLog.repair`), so history never misses a move or
holds two moves out of order.
"""

from __future__ import annotations

import json
import logging

from schemas.errors import RegistryError
from schemas.statuses import PENDING
from tasks.registry.champion import ChampionLog, StaleChampion, parse_pointer
from tasks.registry.signed_records import MAC, PREV, Trust, read_chain, seal_entry
from tasks.runtime.durable_files import dumps
from tasks.runtime.object_store_api import ObjectStore

logger = logging.getLogger(__name__)

APPEND_ATTEMPTS = 20  # history appends racing other writers before giving up
SEQ_DIGITS = 10


class StaleMove(StaleChampion):
    """The champion pointer changed between reading it and moving it: nothing was written."""

    def __init__(self, message: str):
        super().__init__(None, message)


class ObjectChampionLog(ChampionLog):
    """One model's champion pointer and history objects in a store."""

    def __init__(self, store: ObjectStore, name: str, trust: Trust | None = None):
        self.store, self.trust = store, trust
        self.pointer_key = f"{name}/champion.json"
        self.history_prefix = f"{name}/history/"
        self.champion_path = store.where(self.pointer_key)  # for messages
        self.history_path = store.where(self.history_prefix)
        self._records: dict[str, dict | None] = {}  # immutable objects, read once
        self._seen_tag: str | None = None  # the pointer's tag when champion() last read it
        self._last_tag: str | None = None

    # -- the pointer ---------------------------------------------------------------------
    def _pointer(self) -> dict | None:
        found = self.store.read_tagged(self.pointer_key)
        self._last_tag = None if found is None else found[1]
        if found is None:
            return None
        return parse_pointer(found[0], self.champion_path)

    def champion(self) -> dict | None:
        """The pointer (checked where records are signed); remembers its tag, which the next
        :meth:`move` swaps against."""
        pointer = super().champion()
        self._seen_tag = self._last_tag
        return pointer

    def write_pointer(self, entry: dict) -> dict:
        previous = self._pointer() or {}
        pointer = {"version": entry["version"], "since": entry["at"],
                   "event_id": entry["event_id"], "history_entry": entry,
                   "seq": int(previous.get("seq") or 0) + 1, "prev": previous.get(MAC)}
        if self.trust is not None:
            pointer = self.trust.seal("champion", pointer)
        data = json.dumps(pointer, indent=2, sort_keys=True).encode()
        if not self.store.replace_if(self.pointer_key, data, self._seen_tag):
            raise StaleMove(f"{self.champion_path}: stale: another run moved the champion "
                            f"while {entry['version']} was being moved there; nothing was "
                            "changed: read the champion again (`rareflow models list`) and "
                            "run again")
        self._seen_tag = None  # one swap per read
        return pointer

    # -- history -------------------------------------------------------------------------
    def _records_in_order(self, keys: list[str]) -> list[tuple[int, dict]]:
        lines = []
        for key in keys:
            name = key[len(self.history_prefix):]
            if key not in self._records:
                data = self.store.read(key)
                try:
                    entry = json.loads(data.decode("utf-8")) if data is not None else None
                except (UnicodeDecodeError, json.JSONDecodeError):
                    entry = None
                self._records[key] = entry if isinstance(entry, dict) else None
            if self._records[key] is None:
                logger.warning("%s%s is damaged (not a JSON record): skipped",
                               self.history_path, name)
                continue
            lines.append((int(name[:-5]), self._records[key]))
        return lines

    def _keys(self) -> list[str]:
        """The history objects' keys, in sequence order."""
        keys = [k for k in self.store.list(self.history_prefix)
                if k.endswith(".json") and k[len(self.history_prefix):-5].isdigit()]
        return sorted(keys, key=lambda k: int(k[len(self.history_prefix):-5]))

    def _history(self, keys: list[str]) -> list[dict]:
        lines = self._records_in_order(keys)
        if self.trust is None:
            return [entry for _, entry in lines]
        return read_chain(self.trust, lines, where=self.history_path)

    def history(self) -> list[dict]:
        return self._history(self._keys())

    def append_history(self, entry: dict) -> dict:
        """Add ``entry`` as the next history object, unless a record with its ``event_id``
        is there already (a repair by another writer); chained and sealed where records are
        signed. The next number comes from the same listing the check read: a record
        appended meanwhile makes the create fail, and the check runs again."""
        clean = {k: v for k, v in entry.items() if k not in (MAC, PREV)}
        for _ in range(APPEND_ATTEMPTS):
            keys = self._keys()
            history = self._history(keys)
            for done in history:
                if done.get("event_id") == entry.get("event_id"):
                    return done
            sealed = seal_entry(self.trust, clean, history) if self.trust else clean
            seq = int(keys[-1][len(self.history_prefix):-5]) + 1 if keys else 1
            key = f"{self.history_prefix}{seq:0{SEQ_DIGITS}d}.json"
            if self.store.put_if_absent(key, dumps(sealed, indent=None).encode()):
                return sealed
        raise RegistryError(f"{self.history_path}: {APPEND_ATTEMPTS} other writers appended "
                            "history at the same time; nothing of this record was written: run "
                            "again")

    def repair(self) -> None:
        """Append the pointer's move when history misses it (its writer was killed)."""
        pointer = self._pointer()
        if pointer and pointer.get("event_id") and pointer.get("history_entry"):
            ids = {h.get("event_id") for h in self.history()}
            if pointer["event_id"] not in ids:
                self.append_history(pointer["history_entry"])

    def move(self, version: str, **kwargs) -> dict:
        """Point the champion at ``version`` by compare-and-swap against the pointer
        :meth:`champion` last read, then record the move.

        Raises:
            StaleMove: the pointer changed since: nothing was written.
        """
        self.repair()  # an earlier move whose record is missing goes first
        return super().move(version, **kwargs)

    def status(self, version: str, stored: str | None) -> str | None:
        """As on disk; and a version registered ``passed`` whose move was stale is ``stale``
        (its metadata was signed before the swap failed)."""
        if stored == "passed" and any(
                h.get("version") == version and h.get("action") == "register"
                and h.get("status") == "stale" for h in self.history()):
            return "stale"
        return super().status(version, stored) if stored == PENDING else stored
