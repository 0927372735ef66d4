"""Manual approval through the shipped deployments: the `retrain` deployment (concurrency limit
1) registers a pending candidate and ends; its `rareflow.model.approval-requested` event starts
the `approve` deployment, whose run pauses for a decision. Nothing pauses under the
concurrency limit, so no run crashes when the lease would be released.

The server, pool, deployments (every entry of prefect.yaml, `approve` included) and worker
come from tests/e2e/conftest.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from schemas.errors import EXIT_REJECTED
from tasks.registry.approval import HOW_CLI, HOW_TIMEOUT, HOW_UI
from tasks.registry.store import Registry

from .conftest import FAST_TRAINING, MODEL, PREFECT_YAML, ROOT, wait_for_run, wait_until

NAME = MODEL  # the model the deployments were made for (a model's triggers follow it alone)
REQUESTED = "rareflow.model.approval-requested"


def approve_spec(doc: dict) -> dict:
    return next(d for d in doc["deployments"] if d["entrypoint"].startswith("flows/approval.py"))


def test_approve_deployment_is_triggered_by_the_request():
    """Check that prefect.yaml's `approve-demo` deployment runs the approval flow without a
    concurrency limit or schedule, triggered by the demo's approval-requested events only, with
    registry and version from the payload and the name of the model its trigger matches."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from deployments.serve import build_deployments
    from flows.approval import approval_flow

    spec = approve_spec(yaml.safe_load(PREFECT_YAML.read_text()))
    assert "concurrency_limit" not in spec and not spec.get("schedules")
    (trigger,) = [DeploymentEventTrigger.model_validate(t) for t in spec["triggers"]]
    assert trigger.enabled and trigger.expect == {REQUESTED}
    assert trigger.match.model_dump() == {"prefect.resource.id": "rareflow.model.demo"}
    assert trigger.parameters == {
        "registry": "{{ event.payload.registry }}", "version": "{{ event.payload.version }}",
        "name": "demo"}
    assert set(spec["parameters"]) | set(trigger.parameters) <= set(
        approval_flow.parameters.properties)
    (built,) = build_deployments(names=[spec["name"]])
    assert built.flow_name == "rareflow-approve" and built.concurrency_limit is None


# ---------------------------------------------------------------------------------------------
# against the server


def train_pending(server, worker, deployment: str, e2e_data, registry: Path, timeout_s: int):
    """One run of the `retrain` deployment with manual approval; it must end AwaitingApproval."""
    from prefect.deployments import run_deployment

    config = {"data": str(e2e_data["train"]), "label": "is_fraud", "positive": "1",
              "registry": str(registry), "name": NAME, **FAST_TRAINING}
    config["gates"] = {**config["gates"], "approval": "manual", "approval_timeout_s": timeout_s}
    started = run_deployment(deployment, parameters={"config": config}, timeout=0)
    run = wait_for_run(server, started.id, log=worker.log)
    assert run.state.is_completed() and run.state.name == "AwaitingApproval", run.state
    return run


def approval_run(server, worker, registry: Path, version: str, *, paused: bool):
    """The approve deployment's run for ``version`` (once Paused, if ``paused``)."""
    def find():
        with server.client() as client:
            for run in client.read_flow_runs():
                params = run.parameters or {}
                if params.get("version") == version and run.deployment_id \
                        and Path(params.get("registry", "")) == registry.resolve() \
                        and (run.state.is_paused() or not paused):
                    return run
        return None

    return wait_until(find, timeout=300, interval=2, log=worker.log,
                      what=f"the approve deployment's run for {version}")


def rareflow(*args: str, env: dict) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("rareflow")
    command = [str(script)] if script.is_file() else [
        sys.executable, "-c", "from flows.cli import main; main()"]
    return subprocess.run([*command, *args], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


@pytest.mark.e2e
@pytest.mark.slow
def test_decisions_through_the_retrain_deployment(prefect_server, worker, training_deployment,
                                                  e2e_data, tmp_path):
    """Check approval through the `retrain` and `approve` deployments: one candidate approved
    in its paused approve run (API), one rejected with `rareflow models reject`, one left
    unanswered (timeout); the champion moves only on approval, history has each decision, and
    no run crashed."""
    from prefect.flow_runs import resume_flow_run

    registry = tmp_path / "registry"
    reg = Registry(registry, NAME)
    deploy = (prefect_server, worker, training_deployment, e2e_data, registry)

    train_pending(*deploy, timeout_s=600)
    run = approval_run(prefect_server, worker, registry, "v0001", paused=True)
    assert reg.champion() is None
    resume_flow_run(run.id, run_input={"approve": True, "reason": "metrics reviewed",
                                       "approver": "alice"})
    assert wait_for_run(prefect_server, run.id, log=worker.log).state.name == "Approved"
    assert reg.champion()["version"] == "v0001"

    train_pending(*deploy, timeout_s=600)
    run = approval_run(prefect_server, worker, registry, "v0002", paused=True)
    done = rareflow("models", "reject", "v0002", "--reason", "wait for the holiday data",
                    "--actor", "bob", "--registry", str(registry), "--name", NAME,
                    env=prefect_server.env)
    assert done.returncode == EXIT_REJECTED, done.stdout + done.stderr
    assert wait_for_run(prefect_server, run.id, log=worker.log).state.name == "AlreadyDecided"

    train_pending(*deploy, timeout_s=20)
    run = approval_run(prefect_server, worker, registry, "v0003", paused=False)
    assert wait_for_run(prefect_server, run.id, log=worker.log).state.name == "Rejected"

    assert reg.champion()["version"] == "v0001"
    decisions = [(h["version"], h["status"], h["how"], h["actor"], h["reason"])
                 for h in reg.history() if "decision" in h]
    assert decisions[0][:4] == ("v0001", "passed", HOW_UI, "alice")
    assert decisions[1:] == [
        ("v0002", "rejected", HOW_CLI, "bob", "wait for the holiday data"),
        ("v0003", "rejected", HOW_TIMEOUT, decisions[2][3], "no decision within 20 s")]
    assert [h["version"] for h in reg.log.moves()] == ["v0001"]
    with prefect_server.client() as client:
        ours = [r for r in client.read_flow_runs()
                if Path((r.parameters or {}).get("registry") or ((r.parameters or {}).get(
                    "config") or {}).get("registry") or "/-").resolve() == registry.resolve()]
    assert len(ours) == 6 and not [r for r in ours if r.state.is_crashed()], [
        (r.name, r.state.name) for r in ours]
