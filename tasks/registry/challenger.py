"""The shadow challenger: at most one version per model scored beside the champion on every
served row, never served itself, and promoted on live matured rows (``evidence: shadow``) or
retired with its verdict.

``<registry>/<name>/challenger.json`` is sealed as the champion pointer is
(:mod:`tasks.registry.signed_records`, kind ``challenger``: a sequence number, the previous
record's MAC, the MAC over the registry's identity and the model name), and carries the
history entry of the move that wrote it; a cleared challenger is a sealed record whose
``version`` is null. An edited record is refused, and so is an old copy put back (history
moved the challenger since). Every move is a ``history.jsonl`` record of the same
:class:`~tasks.registry.champion.ChampionLog`:

- ``challenge``: a version becomes the challenger (``how``: by hand, or automatically for a
  candidate refused for lack of fair rows); ``champion`` says whom it shadows;
- ``shadow-pending``: it passed the shadow comparison and awaits a manual approval
  (``gates.approval: manual``; ``rareflow models approve|reject`` decides);
- ``promote`` with ``evidence: shadow`` and the shadow ``verdict``: it became the champion;
- ``retire``: it is no longer the challenger, with its ``status`` (``promoted``, ``lost`` with
  the verdict, ``rejected`` by a person, ``cleared`` by hand, ``replaced`` by a newer one).
Callers need not hold the registry's lock: each function here takes it.
"""

from __future__ import annotations

import json
import logging

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import Gates
from schemas.errors import IntegrityError, RegistryError
from schemas.statuses import FAIR_ROWS_GATE, PENDING, REFUSED, SHADOW_FIRST_GATE
from tasks.registry.signed_records import MAC, seal_entry
from tasks.registry.store import Registry
from tasks.runtime.durable_files import write_bytes_atomic

logger = logging.getLogger(__name__)

CHALLENGER_FILE = "challenger.json"
CHALLENGE, RETIRE, SHADOW_PENDING = "challenge", "retire", "shadow-pending"
RECORD_ACTIONS = (CHALLENGE, RETIRE)  # the history actions that write challenger.json
KIND = "challenger"  # the signed record's kind
SHADOW = "shadow"  # the evidence of a promotion decided on live matured rows
HOW_BY_HAND = "by hand"
HOW_REFUSED = "automatically: passed the absolute gates, champion comparison refused"
HOW_SHADOW_FIRST = "automatically: passed the absolute gates, gates.shadow_first"
FIX = ("delete it and name the challenger again (`rareflow models challenge VERSION` with "
       "the key), or `rareflow models challenge --clear`")


class ChallengerRecord:
    """The sealed challenger record of one model's registry folder."""

    def __init__(self, registry: Registry):
        self.reg = registry
        self.path = registry.dir / CHALLENGER_FILE

    def _raw(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{self.path} is corrupt ({exc}): {FIX}") from exc
        if not isinstance(record, dict):
            raise IntegrityError(f"{self.path} is not a challenger record: {FIX}")
        return record

    def moves(self) -> list[dict]:
        """The verified history entries that wrote the record, oldest first."""
        return [h for h in self.reg.log.history() if h.get("action") in RECORD_ACTIONS]

    def checked(self) -> dict | None:
        """The record as written (cleared or not), checked: sealed here and not older than
        history's last challenger move."""
        record = self._raw()
        trust = self.reg.trust
        if record is None or not trust.enforced:
            return record
        trust.check(KIND, record, where=str(self.path), fix=FIX)
        ids = [m.get("event_id") for m in self.moves()]
        if record.get("event_id") in ids and ids.index(record["event_id"]) < len(ids) - 1:
            raise IntegrityError(f"{self.path} names {record.get('version')} but history moved "
                                 "the challenger since: it is an old copy put back; " + FIX)
        return record

    def current(self) -> dict | None:
        """The challenger (``version``, ``since``, ``champion``, ...), or None."""
        record = self.checked()
        return record if record and record.get("version") else None

    def write(self, entry: dict, *, version: str | None) -> dict:
        """Write the record of ``entry``'s move and append ``entry`` to history (the lock is
        held); ``version`` None clears the challenger."""
        trust = self.reg.trust
        entry = seal_entry(trust, entry, self.reg.log.history())
        previous = self._raw() or {}
        record = {"version": version, "since": entry["at"], "event_id": entry["event_id"],
                  "champion": entry.get("champion"), "history_entry": entry,
                  "seq": int(previous.get("seq") or 0) + 1, "prev": previous.get(MAC)}
        record = trust.seal(KIND, record)
        write_bytes_atomic(self.path, json.dumps(record, indent=2, sort_keys=True).encode())
        self.reg.log.append_history(entry)
        return record

    def repair(self) -> None:
        """Finish what a crash interrupted (the lock is held): a move missing from history,
        a challenger still named after it became the champion."""
        record = self.checked()
        if record and record.get("event_id") not in {
                h.get("event_id") for h in self.reg.log.history()}:
            self.reg.log.append_history(record["history_entry"])
        current = self.current()
        champion = (self.reg.champion() or {}).get("version")
        if current and current["version"] == champion:
            self.end(status="promoted", reason="it is the champion now")

    def end(self, *, status: str, reason: str, **extra) -> dict:
        """Retire the current challenger with ``status`` (the lock is held)."""
        current = self.current()
        if current is None:
            raise RegistryError(f"model {self.reg.name!r} has no challenger to retire; name "
                                "one with `rareflow models challenge VERSION`")
        entry = self.reg.log.entry(current["version"], action=RETIRE, reason=reason,
                                   status=status, champion=self.champion(), **extra)
        self.write(entry, version=None)
        logger.info("%s %s is no longer the challenger (%s: %s)", self.reg.name,
                    current["version"], status, reason)
        return entry

    def champion(self) -> str | None:
        return (self.reg.champion() or {}).get("version")


def read_challenger(registry: Registry) -> dict | None:
    """The model's challenger record (checked), or None when it has none."""
    return ChallengerRecord(registry).current()


def check_can_challenge(reg: Registry, version: str) -> dict:
    """The metadata of a version that may become the challenger (the lock is held).

    Raises:
        RegistryError: unknown version, a version of another model, or the champion.
    """
    version = reg.resolve(version)
    meta = reg.verify(version)
    if meta.get("name", reg.name) != reg.name:
        raise RegistryError(f"{version} in {reg.name!r} was written for model "
                            f"{meta.get('name')!r}: a challenger must be a version of "
                            f"{reg.name!r} (train it under that name)")
    champion = (reg.champion() or {}).get("version")
    if version == champion:
        raise RegistryError(f"{reg.name} {version} is the champion: a challenger shadows the "
                            "champion, so name another version (`rareflow models list`)")
    return meta


def challenge(registry: Registry, version: str, *, reason: str, how: str = HOW_BY_HAND,
              replace: bool = False, keep_current: bool = False,
              actor: str | None = None) -> dict | None:
    """Make ``version`` the model's challenger; returns the history entry (None when
    ``keep_current`` and another version is the challenger: it goes on shadowing).

    Raises:
        RegistryError: see :func:`check_can_challenge`; or another version is the challenger
            (unless ``replace``: it is retired as ``replaced``).
    """
    record = ChallengerRecord(registry)
    with registry.lock():
        record.repair()
        meta = check_can_challenge(registry, version)
        version = meta["version"]
        current = record.current()
        if current and current["version"] == version:
            return current["history_entry"]  # already the challenger
        if current and keep_current:
            logger.info("%s %s stays the challenger, its evidence still maturing; %s is "
                        "registered (`rareflow models challenge %s` to shadow it instead)",
                        registry.name, current["version"], version, version)
            return None
        if current and not replace:
            raise RegistryError(f"{registry.name} already has a challenger, "
                                f"{current['version']}: at most one per model; clear it first "
                                "(`rareflow models challenge --clear`)")
        if current:
            record.end(status="replaced", reason=f"replaced by {version}")
        stored = registry.log.status(version, (meta.get("verdict") or {}).get("status"))
        entry = registry.log.entry(version, action=CHALLENGE, reason=reason, status=stored,
                                   actor=actor, champion=record.champion(), how=how)
        record.write(entry, version=version)
    logger.info("%s %s is the challenger (%s), shadowing %s", registry.name, version, how,
                entry["champion"])
    return entry


def clear_challenger(registry: Registry, *, reason: str, status: str = "cleared",
                     actor: str | None = None, **extra) -> dict:
    """Retire the model's challenger (``status``: cleared by hand, lost, rejected)."""
    record = ChallengerRecord(registry)
    with registry.lock():
        record.repair()
        return record.end(status=status, reason=reason, actor=actor, **extra)


def refused_for_fair_rows(verdict: dict) -> bool:
    """Whether a verdict passed every gate but the champion comparison's fair-rows one."""
    return verdict.get("status") == REFUSED and _failed(verdict) == {FAIR_ROWS_GATE}


def sent_to_shadow(verdict: dict) -> bool:
    """Whether ``gates.shadow_first`` refused the verdict so that it shadows the champion."""
    return verdict.get("status") == REFUSED and SHADOW_FIRST_GATE in _failed(verdict)


def _failed(verdict: dict) -> set[str]:
    return {g["gate"] for g in verdict.get("gates", []) if not g.get("passed")}


def challenge_if_refused(registry: Registry, version: str, verdict, gates: Gates) -> dict | None:
    """Make a candidate the challenger when it passed the absolute gates and either
    ``gates.shadow_first`` holds or, with ``gates.shadow_refused``, its champion comparison
    was refused for lack of fair rows. A challenger already shadowing stays: nightly or
    data-triggered retrainings would otherwise replace it before its live evidence matures.
    ``verdict``: the gates' :class:`~tasks.judge.gate_verdict.Verdict` or its stored dict.
    Returns the history entry, or None."""
    verdict = verdict if isinstance(verdict, dict) else verdict.as_dict()
    if gates.shadow_first and sent_to_shadow(verdict):
        return challenge(registry, version, how=HOW_SHADOW_FIRST, keep_current=True,
                         reason="gates.shadow_first: judged on live matured rows before it "
                                "serves")
    if not gates.shadow_refused or not refused_for_fair_rows(verdict):
        return None
    return challenge(registry, version, how=HOW_REFUSED, keep_current=True,
                     reason="too few fair test rows to compare with the champion: judged on "
                            "live matured rows instead")


def shadow_pending(registry: Registry, version: str) -> dict | None:
    """The ``shadow-pending`` entry of a version awaiting approval after passing the shadow
    comparison (None: none, or decided since)."""
    found = None
    for entry in registry.log.history():
        if entry.get("version") != version:
            continue
        if entry.get("action") == SHADOW_PENDING:
            found = entry
        elif "decision" in entry or entry.get("action") == RETIRE:
            found = None
    return found


def settle(registry: Registry, verdict: dict, *, approval: str = "none") -> dict | None:
    """Act on a shadow comparison (:func:`tasks.monitor.shadow_comparison.shadow_verdict`):
    ``passed`` promotes the challenger with ``evidence: shadow`` (``approval`` ``manual``: a
    ``shadow-pending`` record instead), ``rejected`` retires it as ``lost``, ``refused``
    (too few matured positives yet) waits. Returns the history entry, or None."""
    record = ChallengerRecord(registry)
    version, status = verdict["challenger"], verdict["status"]
    with registry.lock():
        record.repair()
        current = record.current()
        if current is None or current["version"] != version or status == "refused":
            return None
        champion = record.champion()
        if champion != verdict["champion"]:  # the champion moved since the rows were scored
            return None
        if status != "passed":
            return record.end(status="lost", reason=verdict["reason"], verdict=verdict,
                              evidence=SHADOW)
        if approval == "manual":
            if shadow_pending(registry, version):
                return None  # already awaiting a decision
            return registry.log.note(version, action=SHADOW_PENDING, status=PENDING,
                                     reason=verdict["reason"], evidence=SHADOW,
                                     verdict=verdict, compared_with=champion)
        entry = promote_on_shadow(registry, version, verdict)
        record.end(status="promoted", reason=f"promoted on shadow evidence ({entry['event_id']})",
                   evidence=SHADOW)
        return entry


def promote_on_shadow(registry: Registry, version: str, verdict: dict, **extra) -> dict:
    """Make ``version`` the champion on shadow evidence (the lock is held; verified first)."""
    registry.verify(version)
    return registry.log.move(version, action="promote", reason=verdict["reason"], forced=False,
                             name=registry.name, status="passed", evidence=SHADOW,
                             verdict=verdict, **extra)


challenge_if_refused_task = task(challenge_if_refused, name="shadow-challenger",
                                 cache_policy=NO_CACHE)
