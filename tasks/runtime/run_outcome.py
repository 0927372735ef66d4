"""What a run ends in, as a Prefect state that a person (the UI's colour) and a script (the
state's type and name; the exit status of ``prefect deployment run --watch``) can read.

=============  ======================================  =====================================
run            outcome (summary ``status``)            final state
=============  ======================================  =====================================
training       promoted (``passed``)                   Completed
training       ``rejected``, ``refused``, ``stale``    Failed named Rejected, Refused, Stale
training       awaiting approval (``pending``)         Completed named AwaitingApproval
monitoring     no drift (``no-drift``)                 Completed
monitoring     recall drift (``drift``)                Failed named Drift
monitoring     too few matured positives to judge      Completed named Inconclusive
               (``cannot-judge``)
=============  ======================================  =====================================

A failed-type state carries the run's summary inside :class:`FailedOutcome`, the error that
calling the flow without ``return_state=True`` raises; :func:`run_summary` reads the summary
back from any final state, so callers run ``flow(..., return_state=True)`` and read it there.
"""

from __future__ import annotations

from prefect.states import Completed, Failed

from schemas.statuses import CANNOT_JUDGE, DRIFT, PENDING, REFUSED, REJECTED, STALE

# status -> (failed?, state name); statuses not listed end in a plain Completed state
TRAINING_STATES = {REJECTED: (True, "Rejected"), REFUSED: (True, "Refused"),
                   STALE: (True, "Stale"), PENDING: (False, "AwaitingApproval")}
MONITORING_STATES = {DRIFT: (True, "Drift"), CANNOT_JUDGE: (False, "Inconclusive")}


class FailedOutcome(Exception):
    """A run that ended in a failed-type outcome (not promoted, recall drift); ``summary`` is
    what the run returned, as for a successful run."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message, summary)

    @property
    def summary(self) -> dict:
        return self.args[1]

    def __str__(self) -> str:
        return self.args[0]


def outcome_state(summary: dict, states: dict, *, message: str):
    """The summary itself (a plain Completed run) or the state its ``status`` names."""
    found = states.get(summary["status"])
    if found is None:
        return summary
    failed, name = found
    if failed:
        return Failed(name=name, message=message, data=FailedOutcome(message, summary))
    return Completed(name=name, message=message, data=summary)


def training_outcome(summary: dict):
    """What the training flow returns: its summary, in a state named after the outcome when
    the candidate was not promoted (Failed: Rejected, Refused, Stale)."""
    failed = [g["gate"] for g in summary["verdict"]["gates"] if not g["passed"]]
    status = summary["status"]
    detail = (f"failed {', '.join(failed)}" if failed else
              "awaiting approval" if status == PENDING else "the champion moved meanwhile")
    verb = "awaits approval" if status == PENDING else f"not promoted ({status}: {detail})"
    return outcome_state(summary, TRAINING_STATES,
                         message=f"{summary['name']} {summary['version']} {verb}; champion "
                                 f"is {summary['champion']}")


def monitoring_outcome(result: dict):
    """What the monitoring flow returns: its result, in a Failed state named Drift on recall
    drift and a Completed one named Inconclusive when it could not judge."""
    return outcome_state(result, MONITORING_STATES, message=result["verdict"])


def run_summary(state) -> dict:
    """The summary a training or monitoring run returned, read from its final state: also
    when the state names an outcome of failed type (Rejected, Drift, ...).

    Raises:
        The run's own error when it failed or crashed with one.
    """
    result = state.result(raise_on_failure=False)
    if isinstance(result, FailedOutcome):
        return result.summary
    return state.result()


def reached_verdict(state) -> bool:
    """Whether a run's final state is a verdict (Completed, or a failed-type outcome such as
    Rejected or Drift) rather than an error."""
    failed_names = {name for states in (TRAINING_STATES, MONITORING_STATES)
                    for failed, name in states.values() if failed}
    return state.is_completed() or (state.is_failed() and state.name in failed_names)
