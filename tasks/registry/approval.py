"""Manual approval of a candidate that passed every gate (``gates.approval: manual``).

The training run never waits for a person: it registers the candidate with status
``pending`` (kept, not promoted, the champion untouched), ends, and emits
``rareflow.model.approval-requested``. A decision then comes from one of three places, all
through :func:`decide_pending`:

- ``rareflow models approve|reject VERSION --reason ...`` (on the command line);
- the approval flow (``flows/approval.py``, the ``approve`` deployment the event triggers, or
  run in-process by ``rareflow train``): it pauses with Prefect's
  ``pause_flow_run(wait_for_input=ApprovalInput)``, so the UI shows a Resume form with the gate
  table, approve (yes/no), a reason and the approver's name; ``resume_flow_run(run_id,
  run_input={"approve": True, "reason": "..."})`` does the same through the API;
- no answer within ``gates.approval_timeout_s``: the approval flow rejects the candidate
  itself (before Prefect's own pause deadline, which would fail the run).

A pending version's metadata never changes (versions are immutable and signed): the decision
is a record in ``history.jsonl`` (actor, reason, how), and an approval moves the champion under
the registry's lock like any promotion; a champion that moved since the candidate was compared
makes it ``stale`` instead.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prefect.input import RunInput
from pydantic import Field

from schemas.config import Gates
from schemas.errors import RegistryError
from schemas.statuses import PENDING
from tasks.judge.gate_verdict import Verdict
from tasks.registry.challenger import SHADOW, ChallengerRecord, shadow_pending
from tasks.registry.open_registry import open_registry
from tasks.registry.store import Registry

logger = logging.getLogger(__name__)

APPROVAL_GATE = "manual_approval"
POLL_SECONDS = 5
GRACE_SECONDS = 120  # Prefect's pause deadline is this much after rareflow's own
HOW_CLI = "on the command line"
HOW_UI = "in the Prefect UI/API"
HOW_TIMEOUT = "by timeout"


class ApprovalInput(RunInput):
    """What the person approving a candidate answers."""

    approve: bool = Field(False, description="Promote this candidate (unticked: reject it).")
    reason: str = Field("", description="Why: recorded in the registry's history.")
    approver: str = Field("", description="Your name (recorded in history; default: this "
                                          "flow run).")


class NotPending(RegistryError):
    """The version asked about is not awaiting a decision (decided, or never pending)."""


@dataclass(frozen=True)
class Decision:
    """What deciding a pending version did: its status now (``passed``: approved and
    promoted; ``rejected``; ``stale``), the champion after it and the history record."""

    name: str
    version: str
    status: str
    champion: str | None
    entry: dict
    elsewhere: bool = False  # decided before this approval run could (or never pending)

    @property
    def promoted(self) -> bool:
        return self.status == "passed"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}"


def approval_markdown(verdict: dict, *, name: str, metrics: dict) -> str:
    """The gate table and headline figures a person sees before approving."""
    at = metrics["at_threshold"]
    lines = [f"### Approve the new `{name}` candidate?", "",
             f"Every gate passed; it awaits a manual approval. Test part: {metrics['rows']} "
             f"rows, {metrics['positives']} positives; recall {at['recall']:.3f}, precision "
             f"{at['precision']:.3f}, PR AUC {metrics['pr_auc']:.3f}, normalised cost "
             f"{at['normalised_cost']:.3f} at threshold {at['threshold']:.4f}.", "",
             "| gate | passed | point | judged | limit |", "|---|---|---:|---:|---:|"]
    for g in Verdict.from_dict(verdict).gates:
        lines.append(f"| {g.gate} | {'yes' if g.passed else 'NO'} | {_fmt(g.point)} | "
                     f"{_fmt(g.value)} | {_fmt(g.limit)} |")
    lines += ["", "Tick **approve** to promote it, or leave it unticked to reject it; give a "
              "reason either way."]
    return "\n".join(lines)


def pending_verdict(verdict: Verdict, gates: Gates) -> Verdict:
    """The verdict a candidate is registered with: ``pending`` when approval is manual and
    every gate passed, else unchanged."""
    if gates.approval != "manual" or verdict.status != "passed":
        return verdict
    return verdict.with_status(PENDING, requested=True, timeout_s=gates.approval_timeout_s)


def apply_decision(verdict: dict, *, approved: bool, reason: str, how: str) -> dict:
    """The verdict with the ``manual_approval`` gate added (a new dict)."""
    reason = clean_reason(reason)
    detail = f"{'approved' if approved else 'rejected'} {how}: {reason}"
    gates = [*verdict["gates"], {"gate": APPROVAL_GATE, "passed": bool(approved), "value": None,
                                 "point": None, "limit": None, "detail": detail}]
    status = "passed" if approved else "rejected"
    return {**verdict, "status": status, "gates": gates,
            "approval": {"approved": bool(approved), "reason": reason, "how": how}}


def clean_reason(reason) -> str:
    return " ".join(str(reason or "").split()) or "no reason given"


def current_verdict(registry: Registry, version: str) -> dict:
    """A version's verdict now: as registered, with the decision on it (if it was pending and
    someone decided) as its ``manual_approval`` gate and its status now."""
    verdict = registry.metadata(version).get("verdict") or {}
    entry = registry.log.decision(version) if verdict.get("status") == PENDING else None
    if entry is None:
        return verdict
    decided = apply_decision(verdict, approved=entry["decision"] == "approved",
                             reason=entry["reason"], how=entry.get("how", "?"))
    return {**decided, "status": entry["status"]}


def decide_pending(registry: Registry | str | Path, name: str, version: str, *,
                   approved: bool, reason: str, actor: str | None = None,
                   how: str = HOW_CLI) -> Decision:
    """Approve (promote) or reject a pending version, under the registry's lock.

    The version is verified (signature and files) and must still be pending with every gate
    passed. An approval moves the champion as any promotion does, unless the champion has
    changed since the candidate was compared with it: then it is ``stale``, not promoted.
    Every outcome is a history record with ``actor`` (default: the flow run, else the OS
    user), the reason and ``how``.

    Raises:
        NotPending: the version is not awaiting a decision (its status is named).
    """
    reg = open_registry(registry, name)
    reason = clean_reason(reason)
    verb = "approved" if approved else "rejected"
    with reg.lock():
        version = reg.resolve(version)
        meta = reg.verify(version)
        verdict, compared, shadow = pending_evidence(reg, version, meta)
        status = PENDING if shadow else reg.log.status(version, verdict.get("status"))
        if status != PENDING or not all(g.get("passed") for g in verdict.get("gates", [])):
            raise NotPending(f"{reg.name} {version} is not awaiting approval (status "
                             f"{status!r}): only a pending version can be approved or rejected")
        current = (reg.champion() or {}).get("version")
        record = {"actor": actor, "decision": verb, "how": how, **shadow}
        if approved and current != compared:
            entry = reg.log.note(version, action="approve", status="stale", **record,
                                 reason=f"{reason} (not promoted: the champion changed from "
                                        f"{compared} to {current} since the comparison)")
        elif approved:
            entry = reg.log.move(version, action="promote", reason=reason, forced=False,
                                 name=reg.name, status="passed", **record)
            current = version
        else:
            entry = reg.log.note(version, action="reject", status="rejected", reason=reason,
                                 **record)
        if shadow:  # a challenger decided: it is no longer the challenger
            ChallengerRecord(reg).end(status={"passed": "promoted"}.get(entry["status"],
                                                                        entry["status"]),
                                      reason=f"{verb} {how}: {reason}")
    logger.info("%s %s %s %s by %s: %s (status %s)", reg.name, version, verb, how,
                entry["actor"], reason, entry["status"])
    return Decision(reg.name, version, entry["status"], current, entry)


def pending_evidence(reg: Registry, version: str, meta: dict) -> tuple[dict, str | None, dict]:
    """What a pending version was judged on: its training verdict and the champion it was
    compared with, or (a challenger that passed the shadow comparison) the shadow verdict,
    its champion and ``{"evidence": "shadow"}`` for the decision's record."""
    shadow = shadow_pending(reg, version)
    if shadow is None:
        return meta.get("verdict") or {}, meta.get("compared_with"), {}
    return shadow["verdict"], shadow["compared_with"], {"evidence": SHADOW,
                                                         "verdict": shadow["verdict"]}


def watch_pending(run_id, seconds: float, still_pending) -> dict:
    """Resume the paused run ``run_id`` with a rejection when ``seconds`` pass, or as soon as
    ``still_pending()`` turns false (decided elsewhere, e.g. on the command line).

    Returns:
        ``{"stop": Event, "fired": None | "timeout" | "decided"}``: set ``stop`` to end the
        watch; ``fired`` says why rareflow resumed the run (None: it did not).
    """
    from prefect.flow_runs import resume_flow_run

    state = {"stop": threading.Event(), "fired": None}
    deadline = time.monotonic() + seconds

    def watch():
        while not state["stop"].wait(max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))):
            why = ("timeout" if time.monotonic() >= deadline
                   else None if still_pending() else "decided")
            if why is None:
                continue
            try:
                resume_flow_run(run_id, run_input={"approve": False, "reason": ""})
                state["fired"] = why
            except Exception as exc:  # someone answered at the same moment: theirs stands
                logger.info("Could not resume the paused approval run (%s): %s", why, exc)
            return

    threading.Thread(target=contextvars.copy_context().run, args=(watch,), daemon=True,
                     name="rareflow-approval-watch").start()
    return state


def decided_already(reg: Registry, version: str) -> Decision:
    """A version someone decided elsewhere (or never pending), as a :class:`Decision`."""
    status = reg.log.status(version, (reg.metadata(version).get("verdict") or {}).get("status"))
    logger.info("%s %s is no longer awaiting approval (status %s): nothing to decide",
                reg.name, version, status)
    return Decision(reg.name, version, status, (reg.champion() or {}).get("version"),
                    reg.log.decision(version) or {}, elsewhere=True)


def ask_for_decision(registry: Registry | str | Path, name: str, version: str, *,
                     timeout_s: int | None = None) -> Decision:
    """Show the gate table, pause the flow run this is called from until a person answers
    (the UI's Resume form or the API), then decide; no answer within ``timeout_s`` (default:
    the version's ``gates.approval_timeout_s``) rejects it. A version decided elsewhere
    meanwhile (``rareflow models approve``) ends the wait. Call it from a flow, not a task.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    reg = open_registry(registry, name)
    version = reg.resolve(version)
    meta = reg.verify(version)
    verdict, _, shadow = pending_evidence(reg, version, meta)
    if not shadow and reg.log.status(version, verdict["status"]) != PENDING:
        return decided_already(reg, version)
    seconds = int(timeout_s or (meta.get("config") or {}).get("gates", {}).get(
        "approval_timeout_s", Gates().approval_timeout_s))
    markdown = approval_markdown(verdict, name=f"{reg.name} {version}",
                                 metrics=meta["metrics"])
    create_markdown_artifact(key="approval-request", markdown=markdown,
                             description=f"{reg.name} {version}: waiting for approval")
    logger.info("%s %s passed every gate: waiting up to %d s for a manual approval (resume "
                "the run in the Prefect UI, or `rareflow models approve|reject %s`)", reg.name,
                version, seconds, version)
    form = ApprovalInput.with_initial_data(description=markdown, approve=False, reason="",
                                           approver="")
    watch = watch_pending(FlowRunContext.get().flow_run.id, seconds,
                          lambda: reg.log.status(version, PENDING) == PENDING)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=seconds + GRACE_SECONDS,
                                poll_interval=min(POLL_SECONDS, seconds))
    except FlowPauseTimeout:  # not even rareflow's own rejection got through
        answer = None
    finally:
        watch["stop"].set()
    try:
        if watch["fired"] == "decided":
            return decided_already(reg, version)
        if answer is None or watch["fired"] == "timeout":
            logger.warning("No approval within %d s: %s %s is rejected", seconds, reg.name,
                           version)
            return decide_pending(reg, name, version, approved=False, how=HOW_TIMEOUT,
                                  reason=f"no decision within {seconds} s")
        return decide_pending(reg, name, version, approved=answer.approve, how=HOW_UI,
                              reason=answer.reason, actor=answer.approver.strip() or None)
    except NotPending:  # decided elsewhere at the same moment: that decision stands
        return decided_already(reg, version)


OUTCOMES = {"passed": "Approved", "rejected": "Rejected", "stale": "Stale"}


def decision_state(decision: Decision):
    """What the approval flow returns: the decision in a ``Completed`` state named after it
    (Approved, Rejected, Stale; AlreadyDecided when it was decided elsewhere)."""
    from prefect.states import Completed

    entry = decision.entry
    name = "AlreadyDecided" if decision.elsewhere else OUTCOMES[decision.status]
    how = (f"{entry['decision']} {entry.get('how')} by {entry.get('actor')}: "
           f"{entry.get('reason')}" if entry else f"status {decision.status}")
    return Completed(name=name, data=decision,
                     message=f"{decision.name} {decision.version} {how}; champion is "
                             f"{decision.champion}")
