"""Prefect events rareflow emits (resource id ``rareflow.model.<name>``) and artifact keys."""

from __future__ import annotations

import logging
import re

from prefect.events import emit_event

logger = logging.getLogger(__name__)

PROMOTED = "rareflow.model.promoted"
REJECTED = "rareflow.model.rejected"
ROLLED_BACK = "rareflow.model.rolled-back"
APPROVAL_REQUESTED = "rareflow.model.approval-requested"
RECALL_DRIFT = "rareflow.monitor.recall-drift"
DATA_ARRIVED = "rareflow.data.arrived"


def resource(name: str) -> dict:
    return {"prefect.resource.id": f"rareflow.model.{name}", "prefect.resource.name": name}


def emit(event: str, *, name: str, payload: dict) -> str | None:
    """Emit an event about model ``name``; returns its id (None when events are off)."""
    emitted = emit_event(event=event, resource=resource(name), payload=payload)
    if emitted is None:
        logger.info("Event %s not emitted (no Prefect API or events disabled)", event)
        return None
    logger.info("Emitted %s for %s", event, name)
    return str(emitted.id)


def artifact_key(prefix: str, name: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes) for a model name."""
    return f"{prefix}-{re.sub(r'[^a-z0-9-]+', '-', name.lower()).strip('-')}"
