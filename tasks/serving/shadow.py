"""The shadow challenger's live verdict, settled in the registry with its event.

Its columns in every scored row are :mod:`tasks.serving.challenger_columns`'; the record is
:mod:`tasks.registry.challenger`'s; the comparison :mod:`tasks.monitor.shadow_comparison`'s.
"""

from __future__ import annotations

import logging

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import Gates
from schemas.statuses import DRIFT, PASSED, REFUSED
from tasks.data.labels import LabelRoles
from tasks.monitor.served import Served, matured_after
from tasks.monitor.shadow_comparison import shadow_verdict
from tasks.registry.challenger import SHADOW, SHADOW_PENDING, read_challenger, settle
from tasks.registry.champion import PROMOTE
from tasks.registry.monitor_state import trained_as_of
from tasks.registry.store import Registry
from tasks.runtime import events

logger = logging.getLogger(__name__)


def shadow_gates(meta: dict) -> Gates:
    """The gates the challenger was trained with (the training gate's margins and approval)."""
    return Gates(**((meta.get("config") or {}).get("gates") or {}))


def judge_challenger(registry: Registry, served: Served, roles: LabelRoles, *,
                     emit_events: bool = True) -> dict | None:
    """Compare the challenger with the champion on the matured rows both decided, and act on
    it: promote (``evidence: shadow``), ask for approval, retire as lost, or keep shadowing.

    Returns:
        ``{"verdict": ..., "action": ..., "status": ..., "event_id": ...}``, or None without
        a challenger or a champion.
    """
    record, pointer = read_challenger(registry), registry.champion()
    if record is None or pointer is None:
        return None
    champion_meta = registry.metadata(pointer["version"])
    challenger_meta = registry.metadata(record["version"])
    gates = shadow_gates(challenger_meta)
    costs = champion_meta["costs"]
    judged = roles.judged & matured_after(served, trained_as_of(challenger_meta))
    verdict = shadow_verdict(served.frame, roles.y, judged, champion=pointer["version"],
                             challenger=record["version"], gates=gates, costs=costs,
                             max_alert_rate=costs.get("max_alert_rate"))
    entry = settle(registry, verdict, approval=gates.approval)
    outcome = {"verdict": verdict, "action": None if entry is None else entry["action"],
               "status": None if entry is None else entry["status"], "event_id": None}
    if entry is not None and emit_events:
        outcome["event_id"] = announce_shadow(registry, entry, verdict)
    return outcome


def drift_withheld(shadow: dict | None) -> str | None:
    """Why a recall-drift event of the champion judged is not emitted (None: emit it): a
    challenger promoted in this run serves now, or one awaits approval, or one still shadows
    the champion, its live evidence not matured yet (a retraining the event starts would
    replace it and restart its evidence). A challenger that lost leaves the event to retrain."""
    if not shadow:
        return None
    version = shadow["verdict"]["challenger"]
    action, status = shadow["action"], shadow["verdict"]["status"]
    if action == PROMOTE:
        return f"challenger {version} was promoted on shadow evidence in this run"
    if action == SHADOW_PENDING or (action is None and status == PASSED):  # pending, again
        return f"challenger {version} passed in shadow and awaits approval"
    if action is None and status == REFUSED:
        return f"challenger {version} is shadowing it, its evidence not matured yet"
    return None


def withhold_answered_drift(result: dict, shadow: dict | None) -> dict:
    """The result with ``drift_withheld`` (:func:`drift_withheld` on a drift, else None) and,
    when withheld, the reason at the end of its verdict line."""
    why = drift_withheld(shadow) if result["status"] == DRIFT else None
    verdict = result["verdict"] + (f"; no drift event: {why}" if why else "")
    return {**result, "drift_withheld": why, "verdict": verdict}


def announce_shadow(registry: Registry, entry: dict, verdict: dict) -> str | None:
    """``rareflow.model.promoted`` (a shadow promotion), ``.approval-requested`` or
    ``.rejected`` (a challenger that lost), the payload saying ``evidence: shadow``."""
    event = {"promote": events.PROMOTED, "retire": events.REJECTED}.get(
        entry["action"], events.APPROVAL_REQUESTED)
    payload = {"version": entry["version"], "status": entry["status"], "evidence": SHADOW,
               "champion": verdict["champion"], "rows": verdict["rows"],
               "positives": verdict["positives"], "reason": verdict["reason"],
               "comparison": verdict["comparison"], "registry": str(registry.root.resolve()),
               "name": registry.name}
    return events.emit(event, name=registry.name, payload=payload)


judge_challenger_task = task(judge_challenger, name="judge-challenger", cache_policy=NO_CACHE)
