"""Which version serves: the champion pointer and the append-only history of its moves.

``champion.json`` is replaced atomically (temp file + ``os.replace``) and carries the history
entry of the move that wrote it, so a crash between the two writes is repaired from it: the
next holder of the registry's lock appends the entry ``history.jsonl`` is missing.
Callers hold the registry's lock around every write here.

Every move records when, who (the Prefect flow run inside one, else the OS user and host),
why, the version's gate status and the champion before it, so ``served_at`` can answer which
version served at a given time. ``history.jsonl`` also records what did not move the champion
(:meth:`ChampionLog.note`): a candidate registered without promotion (rejected, refused,
stale, or pending a manual approval) and a person's (or a timeout's) decision on a pending
one. Only the moves (``promote``, ``rollback``) decide which version served when, and where a
rollback goes.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from schemas.errors import IntegrityError, RegistryError
from schemas.statuses import PENDING
from tasks.registry.signed_records import MAC, Trust, check_pointer, read_chain, seal_entry
from tasks.runtime.durable_files import dumps, write_bytes_atomic

logger = logging.getLogger(__name__)


PROMOTE, ROLLBACK = "promote", "rollback"
MOVES = (PROMOTE, ROLLBACK)  # the history actions that move the champion


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_actor() -> str:
    """Who moves the champion: the Prefect flow run inside one, else the OS user and host."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        run = context.flow_run
        flow_name = context.flow.name if context.flow is not None else "flow"
        return f"prefect flow run {flow_name}/{run.name} ({run.id})"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown user"
    return f"{user}@{socket.gethostname()}"


def outcome_reason(verdict: dict) -> str:
    """Why a registered candidate was not promoted, in a few words (for its history record)."""
    status = verdict.get("status")
    if status == PENDING:
        return "passed every gate; awaiting a manual approval"
    if status == "stale":
        return (verdict.get("stale") or {}).get("detail", "the champion changed meanwhile")
    failed = [g["gate"] for g in verdict.get("gates", []) if not g.get("passed")]
    return f"{status}: failed {', '.join(failed)}" if failed else str(status)


def parse_time(text: str) -> pd.Timestamp:
    """An ISO 8601 time (a time without a zone is UTC), or 'now'.

    Raises:
        ValueError: the text is not a time.
    """
    stamp = pd.Timestamp.now(tz="UTC") if text.strip().lower() == "now" else pd.Timestamp(text)
    if pd.isna(stamp):
        raise ValueError(f"not a time: {text!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def parse_pointer(data: bytes, where) -> dict:
    """A champion pointer's JSON object, read from its bytes (a file or an object).

    Raises:
        IntegrityError: not JSON, or not an object: delete it and promote again.
    """
    try:
        pointer = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where} is corrupt ({exc}): delete it and "
                             "promote the version that should serve") from exc
    if not isinstance(pointer, dict):
        raise IntegrityError(f"{where} is not a champion pointer: delete it "
                             "and promote the version that should serve")
    return pointer


class StaleChampion(RegistryError):
    """Another run changed the champion after the candidate was compared with it."""

    def __init__(self, current: str | None, message: str):
        super().__init__(message)
        self.current = current


class ChampionLog:
    """The champion pointer and history of one model's registry folder."""

    def __init__(self, folder: Path, trust: Trust | None = None):
        self.champion_path = Path(folder) / "champion.json"
        self.history_path = Path(folder) / "history.jsonl"
        self.trust = trust

    def _pointer(self) -> dict | None:
        if not self.champion_path.is_file():
            return None
        return parse_pointer(self.champion_path.read_bytes(), self.champion_path)

    def champion(self) -> dict | None:
        """The pointer: ``version``, ``since``, ``event_id``, ``history_entry``; None if none.
        Checked (:func:`tasks.registry.signed_records.check_pointer`) where records are signed."""
        pointer = self._pointer()
        if pointer is None or self.trust is None or not self.trust.enforced:
            return pointer
        return check_pointer(self.trust, pointer, self.moves(), path=self.champion_path)

    def history(self) -> list[dict]:
        """Every record (moves, registrations, decisions), oldest first. A damaged line (a torn
        last line after a crash, bytes that are not UTF-8 JSON) is skipped, named by number."""
        if not self.history_path.is_file():
            return []
        lines = []
        for number, line in enumerate(self.history_path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                entry = None
            if isinstance(entry, dict):
                lines.append((number, entry))
            else:
                logger.warning("%s line %d is damaged (not a JSON record): skipped",
                               self.history_path, number)
        if self.trust is None:
            return [entry for _, entry in lines]
        return read_chain(self.trust, lines, where=str(self.history_path))

    def moves(self) -> list[dict]:
        """The records that moved the champion (promotions and rollbacks), oldest first."""
        return [h for h in self.history() if h.get("action", "promote") in MOVES]

    def decision(self, version: str) -> dict | None:
        """The last decision recorded on a pending ``version`` (None: none yet)."""
        found = [h for h in self.history() if h.get("version") == version and "decision" in h]
        return found[-1] if found else None

    def status(self, version: str, stored: str | None) -> str | None:
        """A version's status now: its stored verdict's, unless it was pending and someone
        decided (``passed`` approved and promoted, ``rejected``, ``stale``)."""
        if stored != PENDING:
            return stored
        decided = self.decision(version)
        return decided["status"] if decided else PENDING

    def append_history(self, entry: dict) -> dict:
        """Append ``entry`` (chained and sealed where records are signed); returns it."""
        if self.trust is not None:
            entry = seal_entry(self.trust, entry, self.history())
        with open(self.history_path, "ab") as fh:
            if fh.tell():  # a torn final line from a crash: start on a new line
                with open(self.history_path, "rb") as rd:
                    rd.seek(-1, os.SEEK_END)
                    if rd.read(1) != b"\n":
                        fh.write(b"\n")
            fh.write((dumps(entry, indent=None) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        return entry

    def repair(self) -> None:
        """Finish what a crash interrupted: record a move missing from history."""
        champion = self.champion()
        if champion and champion.get("event_id"):
            ids = {h.get("event_id") for h in self.history()}
            if champion["event_id"] not in ids:
                self.append_history(champion["history_entry"])
        for leftover in self.champion_path.parent.glob(f".{self.champion_path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)  # only written under the lock: its writer died

    def entry(self, version: str, *, action: str, reason: str, forced: bool = False,
              status: str | None = None, actor: str | None = None, **extra) -> dict:
        """A history record: ``previous`` is the champion when it is written; ``actor`` by
        default :func:`current_actor`; ``extra`` e.g. a decision's ``decision`` and ``how``."""
        previous = self._pointer()
        return {
            "event_id": uuid.uuid4().hex,
            "action": action,
            "version": version,
            "previous": previous["version"] if previous else None,
            "at": now_iso(),
            "actor": actor or current_actor(),
            "reason": reason,
            "forced": forced,
            "status": status,
            **extra,
        }

    def note(self, version: str, *, action: str, reason: str, status: str | None,
             actor: str | None = None, **extra) -> dict:
        """Record what happened to ``version`` without moving the champion; returns it."""
        entry = self.append_history(self.entry(version, action=action, reason=reason,
                                               status=status, actor=actor, **extra))
        logger.info("%s %s: %s (%s); champion unchanged", action, version, status, reason)
        return entry

    def move(self, version: str, *, action: str, reason: str, forced: bool,
             name: str, status: str | None = None, actor: str | None = None,
             **extra) -> dict:
        """Point the champion at ``version`` and record the move; returns the history entry."""
        entry = self.entry(version, action=action, reason=reason, forced=forced, status=status,
                           actor=actor, **extra)
        if self.trust is not None:
            entry = seal_entry(self.trust, entry, self.history())
        self.write_pointer(entry)
        self.append_history(entry)
        logger.info("%s %s: champion is now %s", action, name, version)
        return entry

    def write_pointer(self, entry: dict) -> dict:
        """Point the champion at ``entry``'s version (sealed, numbered and chained to the
        pointer before it where records are signed)."""
        previous = self._pointer() or {}
        pointer = {"version": entry["version"], "since": entry["at"],
                   "event_id": entry["event_id"], "history_entry": entry,
                   "seq": int(previous.get("seq") or 0) + 1, "prev": previous.get(MAC)}
        if self.trust is not None:
            pointer = self.trust.seal("champion", pointer)
        write_bytes_atomic(self.champion_path, json.dumps(pointer, indent=2,
                                                          sort_keys=True).encode())
        return pointer

    def stack(self) -> list[str]:
        """Champions in order of service: promotions push, rollbacks pop."""
        stack: list[str] = []
        for entry in self.moves():
            if entry.get("action") == "rollback":
                if stack:
                    stack.pop()
                if not stack or stack[-1] != entry["version"]:
                    stack.append(entry["version"])
            else:
                stack.append(entry["version"])
        return stack

    def served_at(self, when) -> dict | None:
        """The move in force at ``when`` (a time; one without a zone is UTC): the last entry
        at or before it. None when no version served yet."""
        when = parse_time(when) if isinstance(when, str) else pd.Timestamp(when)
        when = when.tz_localize("UTC") if when.tzinfo is None else when
        found = None
        for entry in self.moves():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                if parse_time(entry["at"]) <= when:
                    found = entry
        return found


def announce_move(name: str, entry: dict) -> str | None:
    """Emit the event of a champion move made by hand (``rareflow.model.promoted`` or
    ``rareflow.model.rolled-back``), as the training flow does for its promotions, or of a
    decision that did not promote a pending version (``rareflow.model.rejected``).

    Only with a Prefect server configured (``PREFECT_API_URL``): without one, Prefect would
    start a temporary server just to drop the event. The move is in history.jsonl either way.
    """
    from prefect.settings import PREFECT_API_URL

    from tasks.runtime import events

    if not PREFECT_API_URL.value():
        logger.info("No Prefect server configured (PREFECT_API_URL): %s of %s %s recorded in "
                    "history.jsonl only", entry["action"], name, entry["version"])
        return None
    event = {"rollback": events.ROLLED_BACK, "promote": events.PROMOTED}.get(
        entry["action"], events.REJECTED)  # a decision that did not promote
    payload = {key: entry.get(key) for key in ("version", "previous", "action", "actor",
                                               "reason", "forced", "status", "event_id", "at",
                                               "decision", "how") if key in entry}
    return events.emit(event, name=name, payload={**payload, "manual": True})
