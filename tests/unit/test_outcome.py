"""The final state of a run: its type and name say the outcome, its data the summary."""

from __future__ import annotations

import pickle

import pytest

from tasks.runtime.run_outcome import (
    FailedOutcome,
    monitoring_outcome,
    reached_verdict,
    run_summary,
    training_outcome,
)


def summary(status: str, failed: tuple = ()) -> dict:
    gates = [{"gate": "min_test_positives", "passed": True}]
    gates += [{"gate": name, "passed": False} for name in failed]
    return {"name": "fraud", "version": "v0002", "status": status, "champion": "v0001",
            "verdict": {"gates": gates}}


@pytest.mark.parametrize("status, failed, type_, name", [
    ("rejected", ("min_recall",), "FAILED", "Rejected"),
    ("refused", ("min_test_positives",), "FAILED", "Refused"),
    ("stale", (), "FAILED", "Stale"),
    ("pending", (), "COMPLETED", "AwaitingApproval"),
])
def test_training_outcomes_name_their_state(status, failed, type_, name):
    """Check that a candidate not promoted ends in a Failed state named after the outcome
    (awaiting approval: a Completed one), with the summary readable from it."""
    given = summary(status, failed)
    state = training_outcome(given)
    assert (state.type.value, state.name) == (type_, name)
    assert "fraud v0002" in state.message and "champion is v0001" in state.message
    assert all(g in state.message for g in failed)
    assert run_summary(state) == given and reached_verdict(state)


def test_a_promoted_run_returns_its_summary():
    """Check that a promoted candidate's run returns the summary itself (plain Completed)."""
    given = summary("passed")
    assert training_outcome(given) is given


@pytest.mark.parametrize("status, type_, name", [
    ("drift", "FAILED", "Drift"), ("cannot-judge", "COMPLETED", "Inconclusive")])
def test_monitoring_outcomes_name_their_state(status, type_, name):
    """Check that recall drift is a Failed state named Drift and too few matured positives a
    Completed one named Inconclusive, each carrying the verdict line and the result."""
    result = {"status": status, "verdict": f"{status.upper()} fraud v0001: ..."}
    state = monitoring_outcome(result)
    assert (state.type.value, state.name, state.message) == (type_, name, result["verdict"])
    assert run_summary(state) == result
    assert monitoring_outcome({"status": "no-drift", "verdict": "x"})["status"] == "no-drift"


def test_failed_outcome_survives_pickling_and_reads_as_its_message():
    """Check that the error a plain call raises keeps the summary through pickling (result
    persistence) and prints as the state's message."""
    error = pickle.loads(pickle.dumps(FailedOutcome("fraud v0002 not promoted", {"a": 1})))
    assert error.summary == {"a": 1} and str(error) == "fraud v0002 not promoted"


def test_a_run_that_failed_with_an_error_raises_it():
    """Check that reading the summary of a run that failed with an error raises that error,
    and such a state is not a verdict."""
    from prefect.states import Failed

    state = Failed(data=ValueError("bad column"), message="bad column")
    with pytest.raises(ValueError, match="bad column"):
        run_summary(state)
    assert not reached_verdict(state)


@pytest.mark.parametrize("status, code", [("no-drift", 0), ("drift", 4), ("cannot-judge", 5)])
def test_monitoring_result_reads_as_a_type_with_its_exit_status(status, code):
    """Check that the command line's view of a monitoring result carries its status,
    verdict, reports and exit status (0 no drift, 4 drift, 5 cannot judge)."""
    from tasks.monitor.outcome import MonitoringOutcome

    result = {"status": status, "version": "v0001", "verdict": f"{status}: recall 0.8",
              "reports": {"folder": "/r/fraud/versions/v0001/reports/x", "summary": "s"},
              "event_id": None}
    outcome = MonitoringOutcome.from_dict(result)
    assert (outcome.status, outcome.version, outcome.exit_code) == (status, "v0001", code)
    assert outcome.reports == "/r/fraud/versions/v0001/reports/x"
    assert outcome.verdict == f"{status}: recall 0.8"
