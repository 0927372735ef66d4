"""The approval flow: a person approves or rejects a candidate registered as ``pending``
(``gates.approval: manual``). The run pauses with a Resume form in the Prefect UI; the decision
(or the timeout's rejection) goes through :func:`tasks.registry.approval.decide_pending`.

It runs as the ``approve`` deployment (triggered by ``rareflow.model.approval-requested``, no
concurrency limit, so a paused run holds no slot) and in-process after ``rareflow train``."""

from __future__ import annotations

from prefect import flow

from tasks.registry.approval import ask_for_decision, decision_state
from tasks.registry.champion import announce_move


@flow(name="rareflow-approve", validate_parameters=True)
def approval_flow(registry: str, name: str, version: str, timeout_s: int | None = None):
    """Ask for a decision on a pending version of model ``name`` in ``registry``: pause until
    a person answers in the UI/API (or someone runs ``rareflow models approve|reject``), at
    most ``timeout_s`` seconds (default: the version's ``gates.approval_timeout_s``), after
    which the version is rejected. An approval promotes it unless the champion moved since it
    was compared (``stale``).

    Returns a :class:`tasks.registry.approval.Decision` (its state is named Approved,
    Rejected, Stale or AlreadyDecided).
    """
    decision = ask_for_decision(registry, name, version, timeout_s=timeout_s)
    if not decision.elsewhere:
        announce_move(decision.name, decision.entry)
    return decision_state(decision)
