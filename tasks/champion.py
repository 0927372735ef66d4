"""Which version serves: the champion pointer and the append-only history of its moves.

``champion.json`` is replaced atomically (temp file + ``os.replace``) and carries the history
entry of the move that wrote it, so a crash between the two writes is repaired from it: the
next holder of the registry's lock appends the entry ``history.jsonl`` is missing.
Callers hold the registry's lock around every write here.

Every move records when, who (the Prefect flow run inside one, else the OS user and host),
why, the version's gate status and the champion before it, so ``served_at`` can answer which
version served at a given time.
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

from schemas.errors import IntegrityError
from tasks.files import dumps, write_bytes_atomic

logger = logging.getLogger(__name__)


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


def parse_time(text: str) -> pd.Timestamp:
    """An ISO 8601 time (a time without a zone is UTC), or 'now'.

    Raises:
        ValueError: the text is not a time.
    """
    stamp = pd.Timestamp.now(tz="UTC") if text.strip().lower() == "now" else pd.Timestamp(text)
    if pd.isna(stamp):
        raise ValueError(f"not a time: {text!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


MOVE_ACTIONS = ("promote", "rollback")  # history's other entries leave the champion where it is


class ChampionLog:
    """The champion pointer and history of one model's registry folder."""

    def __init__(self, folder: Path):
        self.champion_path = Path(folder) / "champion.json"
        self.history_path = Path(folder) / "history.jsonl"

    def champion(self) -> dict | None:
        """The pointer: ``version``, ``since``, ``event_id``, ``history_entry``; None if none."""
        if not self.champion_path.is_file():
            return None
        try:
            return json.loads(self.champion_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IntegrityError(f"{self.champion_path} is corrupt: {exc}") from exc

    def history(self) -> list[dict]:
        """Promotion and rollback records, oldest first. A damaged line (a torn last line
        after a crash, bytes that are not UTF-8 JSON) is skipped and named by its number."""
        if not self.history_path.is_file():
            return []
        out = []
        for number, line in enumerate(self.history_path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                entry = None
            if isinstance(entry, dict):
                out.append(entry)
            else:
                logger.warning("%s line %d is damaged (not a JSON record): skipped",
                               self.history_path, number)
        return out

    def append_history(self, entry: dict) -> None:
        with open(self.history_path, "ab") as fh:
            if fh.tell():  # a torn final line from a crash: start on a new line
                with open(self.history_path, "rb") as rd:
                    rd.seek(-1, os.SEEK_END)
                    if rd.read(1) != b"\n":
                        fh.write(b"\n")
            fh.write((dumps(entry, indent=None) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())

    def repair(self) -> None:
        """Finish what a crash interrupted: record a move missing from history."""
        champion = self.champion()
        if champion and champion.get("event_id"):
            ids = {h.get("event_id") for h in self.history()}
            if champion["event_id"] not in ids:
                self.append_history(champion["history_entry"])
        for leftover in self.champion_path.parent.glob(f".{self.champion_path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)  # only written under the lock: its writer died

    def move(self, version: str, *, action: str, reason: str, forced: bool,
             name: str, status: str | None = None) -> dict:
        """Point the champion at ``version`` and record the move; returns the history entry."""
        previous = self.champion()
        entry = {
            "event_id": uuid.uuid4().hex,
            "action": action,
            "version": version,
            "previous": previous["version"] if previous else None,
            "at": now_iso(),
            "actor": current_actor(),
            "reason": reason,
            "forced": forced,
            "status": status,
        }
        pointer = {"version": version, "since": entry["at"], "event_id": entry["event_id"],
                   "history_entry": entry}
        write_bytes_atomic(self.champion_path, json.dumps(pointer, indent=2,
                                                          sort_keys=True).encode())
        self.append_history(entry)
        logger.info("%s %s: champion is now %s", action, name, version)
        return entry

    def record(self, version: str, *, action: str, reason: str, forced: bool = False) -> dict:
        """Append a history entry that does not move the champion (e.g. a forced signing)."""
        entry = {"event_id": uuid.uuid4().hex, "action": action, "version": version,
                 "at": now_iso(), "actor": current_actor(), "reason": reason, "forced": forced}
        self.append_history(entry)
        return entry

    def moves(self) -> list[dict]:
        """The history entries that moved the champion (promotions and rollbacks)."""
        return [e for e in self.history() if e.get("action") in MOVE_ACTIONS]

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
    ``rareflow.model.rolled-back``), as the training flow does for its promotions.

    Only with a Prefect server configured (``PREFECT_API_URL``): without one, Prefect would
    start a temporary server just to drop the event. The move is in history.jsonl either way.
    """
    from prefect.settings import PREFECT_API_URL

    from tasks import events

    if not PREFECT_API_URL.value():
        logger.info("No Prefect server configured (PREFECT_API_URL): %s of %s %s recorded in "
                    "history.jsonl only", entry["action"], name, entry["version"])
        return None
    event = events.ROLLED_BACK if entry["action"] == "rollback" else events.PROMOTED
    payload = {key: entry.get(key) for key in ("version", "previous", "action", "actor",
                                               "reason", "forced", "status", "event_id", "at")}
    return events.emit(event, name=name, payload={**payload, "manual": True})
