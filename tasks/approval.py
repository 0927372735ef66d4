"""Manual approval of a candidate that passed every gate (``gates.approval: manual``).

The run pauses with Prefect's ``pause_flow_run(wait_for_input=ApprovalInput)``: the Prefect
UI shows the run as Paused, with a Resume button whose form carries the gate table and asks
for approve (yes/no) and a reason. ``resume_flow_run(run_id, run_input={"approve": True,
"reason": "..."})`` does the same through the API. No answer within
``gates.approval_timeout_s`` rejects the candidate: rareflow itself then resumes the run
with a rejection (before Prefect's own pause deadline, which would fail the whole run), so
the candidate is still registered, as rejected. The decision becomes the verdict's
``manual_approval`` gate, so the version's metadata records it.
"""

from __future__ import annotations

import contextvars
import logging
import threading

from prefect.input import RunInput
from pydantic import Field

from schemas.config import Gates

logger = logging.getLogger(__name__)

APPROVAL_GATE = "manual_approval"
POLL_SECONDS = 5
GRACE_SECONDS = 120  # Prefect's pause deadline is this much after rareflow's own


class ApprovalInput(RunInput):
    """What the person approving a candidate answers."""

    approve: bool = Field(False, description="Promote this candidate (unticked: reject it).")
    reason: str = Field("", description="Why: recorded in the version's metadata and history.")


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}"


def approval_markdown(verdict: dict, *, name: str, metrics: dict) -> str:
    """The gate table and headline figures a person sees before approving."""
    at = metrics["at_threshold"]
    lines = [f"### Approve the new `{name}` candidate?", "",
             f"Every gate passed. Test part: {metrics['rows']} rows, {metrics['positives']} "
             f"positives; recall {at['recall']:.3f}, precision {at['precision']:.3f}, PR AUC "
             f"{metrics['pr_auc']:.3f}, normalised cost {at['normalised_cost']:.3f} at "
             f"threshold {at['threshold']:.4f}.", "",
             "| gate | passed | point | judged | limit |", "|---|---|---:|---:|---:|"]
    for g in verdict["gates"]:
        lines.append(f"| {g['gate']} | {'yes' if g['passed'] else 'NO'} | "
                     f"{_fmt(g.get('point', g['value']))} | {_fmt(g['value'])} | "
                     f"{_fmt(g['limit'])} |")
    lines += ["", "Tick **approve** to promote it, or leave it unticked to reject it; give a "
              "reason either way."]
    return "\n".join(lines)


def apply_decision(verdict: dict, *, approved: bool, reason: str, how: str) -> dict:
    """The verdict with the ``manual_approval`` gate added (a new dict)."""
    reason = " ".join(str(reason or "").split()) or "no reason given"
    detail = f"{'approved' if approved else 'rejected'} {how}: {reason}"
    gates = [*verdict["gates"], {"gate": APPROVAL_GATE, "passed": bool(approved), "value": None,
                                 "point": None, "limit": None, "detail": detail}]
    status = verdict["status"] if approved else "rejected"
    return {**verdict, "status": status, "gates": gates,
            "approval": {"approved": bool(approved), "reason": reason, "how": how}}


def reject_at_deadline(run_id, seconds: float) -> tuple[threading.Timer, threading.Event]:
    """Resume the paused run with a rejection after ``seconds`` unless cancelled first."""
    from prefect.flow_runs import resume_flow_run

    fired = threading.Event()

    def fire():
        fired.set()
        try:
            resume_flow_run(run_id, run_input={"approve": False, "reason": ""})
        except Exception as exc:  # someone answered at the same moment: theirs stands
            logger.info("Approval deadline reached but the run could not be resumed: %s", exc)

    timer = threading.Timer(seconds, contextvars.copy_context().run, args=(fire,))
    timer.daemon = True
    timer.start()
    return timer, fired


def request_approval(verdict: dict, gates: Gates, *, name: str, metrics: dict) -> dict:
    """Pause the flow run for a person's decision when approval is manual and every gate
    passed; return the verdict with the decision (unchanged otherwise).

    Call it from a flow: it pauses the flow run it is in.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    if gates.approval != "manual" or verdict["status"] != "passed":
        return verdict
    seconds = gates.approval_timeout_s
    markdown = approval_markdown(verdict, name=name, metrics=metrics)
    create_markdown_artifact(key="approval-request", markdown=markdown,
                             description=f"{name}: waiting for approval")
    logger.info("Every gate passed: waiting up to %d s for a manual approval (resume the run "
                "in the Prefect UI)", seconds)
    form = ApprovalInput.with_initial_data(description=markdown, approve=False, reason="")
    timer, fired = reject_at_deadline(FlowRunContext.get().flow_run.id, seconds)
    try:
        answer = pause_flow_run(wait_for_input=form, timeout=seconds + GRACE_SECONDS,
                                poll_interval=min(POLL_SECONDS, seconds))
    except FlowPauseTimeout:  # not even rareflow's own rejection got through
        answer = None
    finally:
        timer.cancel()
    if answer is None or (fired.is_set() and not answer.approve and not answer.reason):
        logger.warning("No approval within %d s: the candidate is rejected", seconds)
        return apply_decision(verdict, approved=False, how="by timeout",
                              reason=f"no decision within {seconds} s")
    decided = apply_decision(verdict, approved=answer.approve, reason=answer.reason,
                             how="in the Prefect UI/API")
    logger.info("Manual approval: %s", decided["gates"][-1]["detail"])
    return decided
