"""deployments/prefect.yaml and serve.py against a real Prefect server, worker and events.

The server, pool, deployments and worker come from tests/e2e/conftest.py. Events are emitted
the two ways docs/production.md shows: `prefect.events.emit_event` in a Python process, and the
`prefect event emit` CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.registry.store import Registry
from tasks.runtime.run_outcome import reached_verdict

from .conftest import (
    FAST_TRAINING,
    MODEL,
    PREFECT_YAML,
    ROOT,
    VENV_BIN,
    Proc,
    existing_deployments,
    kill_flow_run_processes,
    run_cli,
    wait_for_run,
    wait_until,
)

DRIFT = "rareflow.monitor.recall-drift"
ARRIVED = "rareflow.data.arrived"


def training_spec(doc: dict) -> dict:
    return next(d for d in doc["deployments"] if d["entrypoint"].startswith("flows/training.py"))


def triggered_runs(server, automation_name: str) -> list:
    """Flow runs that the named automation created."""
    with server.client() as client:
        return [r for r in client.read_flow_runs()
                if r.created_by and r.created_by.type == "AUTOMATION"
                and r.created_by.display_value == automation_name]


def champion(registry: Path, name: str) -> dict | None:
    path = Path(registry) / name / "champion.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------------------------------
# the file itself (no server)


def test_prefect_yaml_is_what_prefect_deploy_reads():
    """Check that prefect.yaml validates as Prefect reads it, with the schedules and triggers."""
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    doc = yaml.safe_load(PREFECT_YAML.read_text())
    model = PrefectYamlModel.model_validate(doc)
    by_entry = {d.entrypoint: d for d in model.deployments}
    assert set(by_entry) == {"flows/training.py:training_flow",
                             "flows/monitoring.py:monitoring_flow",
                             "flows/approval.py:approval_flow",
                             "flows/scoring.py:scoring_flow"}
    for dep in model.deployments:
        assert dep.enforce_parameter_schema is True
        assert dep.work_pool.name == "rareflow"
        if dep.entrypoint == "flows/approval.py:approval_flow":
            continue  # event-triggered only (tests/e2e/test_approval_deployment.py)
        assert [s.cron for s in dep.schedules] and all(s.active for s in dep.schedules)
        assert set(dep.parameters) == {"config"}
    training = by_entry["flows/training.py:training_flow"]
    triggers = {t["expect"][0]: DeploymentEventTrigger.model_validate(t)
                for t in training.triggers}
    assert set(triggers) == {DRIFT, ARRIVED}
    for trigger in triggers.values():
        assert trigger.enabled
        # the demo's deployments answer the demo's events only (one set per model)
        assert trigger.match.model_dump() == {"prefect.resource.id": "rareflow.model.demo"}
        config = trigger.parameters["config"]
        assert "registry" in config and "label" in config and config["window"]
        assert config["name"] == "demo"
        # the run follows the event: its payload's source and as_of (tasks/data/arrivals.py)
        assert trigger.parameters["trigger"] == {"event": "{{ event.event }}",
                                                 "payload": "{{ event.payload }}"}
        assert not config["data"].startswith("{{")
    # a burst of arrivals for one model starts one run, 10 minutes after the first
    arrived = triggers[ARRIVED]
    assert arrived.for_each == {"prefect.resource.id"} and arrived.threshold == 1
    assert arrived.within.total_seconds() == 900 and arrived.posture == "Reactive"
    assert arrived.schedule_after.total_seconds() == 600


def test_parameter_defaults_validate_as_configs():
    """Check that every config in prefect.yaml is a valid TrainingConfig, MonitoringConfig or
    ScoringConfig."""
    from schemas.config import MonitoringConfig, TrainingConfig, TriggerEvent
    from schemas.scoring import ScoringConfig

    doc = yaml.safe_load(PREFECT_YAML.read_text())
    for dep in doc["deployments"]:
        if "config" not in dep["parameters"]:  # approve: checked in test_approval_deployment
            continue
        model = (TrainingConfig if "training" in dep["entrypoint"] else ScoringConfig
                 if "scoring" in dep["entrypoint"] else MonitoringConfig)
        model.model_validate(dep["parameters"]["config"])
        for trigger in dep.get("triggers") or []:
            rendered = {k: ("x" if isinstance(v, str) and "{{" in v else v)
                        for k, v in trigger["parameters"]["config"].items()}
            model.model_validate(rendered)
            TriggerEvent.model_validate({"event": "rareflow.data.arrived",
                                         "payload": {"source": "x"}})


@pytest.mark.slow
def test_serve_builds_the_same_deployments():
    """Check that serve.py builds prefect.yaml's deployments with schedules and triggers."""
    from deployments.serve import build_deployments

    doc = yaml.safe_load(PREFECT_YAML.read_text())
    spec = training_spec(doc)
    (built,) = build_deployments(names=[spec["name"]])
    assert built.name == spec["name"] and built.flow_name == "rareflow-train"
    assert built.parameters == spec["parameters"]
    assert built.enforce_parameter_schema
    assert [s.schedule.cron for s in built.schedules] == [spec["schedules"][0]["cron"]]
    assert sorted(t.name for t in built.triggers) == sorted(t["name"] for t in spec["triggers"])
    assert built.concurrency_limit == 1
    assert built.concurrency_options.collision_strategy == "ENQUEUE"
    with pytest.raises(ValueError, match="must be among"):
        build_deployments(names=["no-such-deployment"])


# ---------------------------------------------------------------------------------------------
# against the server


@pytest.mark.e2e
@pytest.mark.slow
def test_deployments_are_registered(prefect_server, deployed, training_deployment):
    """Check that deploying prefect.yaml registers pool, schema, schedules and automations."""
    with prefect_server.client() as client:
        dep = client.read_deployment_by_name(training_deployment)
        automations = client.read_resource_related_automations(f"prefect.deployment.{dep.id}")
        pool = client.read_work_pool(deployed["pool"])
    assert pool.type == "process"
    assert dep.work_pool_name == deployed["pool"]
    assert dep.enforce_parameter_schema
    # the UI form: TrainingConfig with field descriptions and defaults
    schema = dep.parameter_openapi_schema
    fields = schema["definitions"]["TrainingConfig"]["properties"]
    assert fields["data"]["description"] and fields["seed"]["default"] == 0
    assert schema["definitions"]["Costs"]["properties"]["fn_cost"]["default"] == 10.0
    assert dep.parameters == training_spec(deployed["doc"])["parameters"]
    assert [s.schedule.cron for s in dep.schedules] == ["0 2 * * *"]
    steps = [step for step in dep.pull_steps or []
             if "prefect.deployments.steps.set_working_directory" in step]
    assert [s["prefect.deployments.steps.set_working_directory"]["directory"]
            for s in steps] == [str(ROOT)]
    expected = {t["name"]: t for t in training_spec(deployed["doc"])["triggers"]}
    assert {a.name for a in automations} == set(expected)
    for automation in automations:
        assert automation.enabled
        assert automation.trigger.expect == set(expected[automation.name]["expect"])
        (action,) = automation.actions
        assert action.type == "run-deployment" and action.deployment_id == dep.id
    monitor_spec = next((d for d in deployed["deployed"]
                         if d["entrypoint"].startswith("flows/monitoring.py")), None)
    if monitor_spec is None:
        pytest.skip("flows/monitoring.py is not in this checkout: only training was deployed")
    with prefect_server.client() as client:
        monitor = client.read_deployment_by_name(f"rareflow-monitor/{monitor_spec['name']}")
    assert [s.schedule.cron for s in monitor.schedules] == ["0 6 * * *"]


@pytest.mark.e2e
@pytest.mark.slow
def test_training_deployment_run_completes_and_promotes(trained_run, e2e_data):
    """Check that a run started through the API completes and promotes into the registry."""
    run = trained_run["run"]
    assert run.state.is_completed(), run.state
    assert run.parameters["config"] == trained_run["config"]
    assert run.work_pool_name == "rareflow"
    record = champion(e2e_data["registry"], MODEL)
    assert record is not None, "no champion.json after a passing run"
    # the promotion this run made (other tests of the package may have moved it since)
    moves = [h for h in Registry(e2e_data["registry"], MODEL).log.moves()
             if str(run.id) in (h.get("actor") or "")]
    assert [m["action"] for m in moves] == ["promote"], moves
    assert (e2e_data["registry"] / MODEL / "versions" / moves[0]["version"] /
            "model.joblib").is_file()


@pytest.mark.e2e
@pytest.mark.slow
def test_training_run_artifacts(prefect_server, trained_run):
    """Check that the run's test-metrics, gate-verdict and strategy-leaderboard artifacts exist."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with prefect_server.client() as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[trained_run["run"].id])))
    kinds = {a.key: a.type for a in artifacts}
    assert kinds.get("test-metrics") == "markdown", kinds
    assert kinds.get("gate-verdict") == "table", kinds
    assert kinds.get("strategy-leaderboard") == "table", kinds
    verdict = next(a for a in artifacts if a.key == "gate-verdict")
    rows = verdict.data if isinstance(verdict.data, list) else json.loads(verdict.data)
    assert rows, "the gate-verdict table is empty"


@pytest.mark.e2e
@pytest.mark.slow
def test_monitoring_deployment_runs(prefect_server, deployed, trained_run, e2e_data, worker):
    """Check that the monitoring deployment's config runs to a verdict and saves its reports."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment

    spec = next((d for d in deployed["deployed"]
                 if d["entrypoint"].startswith("flows/monitoring.py")), None)
    if spec is None:
        pytest.skip("flows/monitoring.py is not in this checkout")
    # The deployment's own config, on the model trained above; no event, so nothing retrains.
    config = {**spec["parameters"]["config"], "name": MODEL, "emit_events": False,
              "drift_sample_rows": 1000}
    started = run_deployment(f"rareflow-monitor/{spec['name']}", parameters={"config": config},
                             timeout=0)
    run = wait_for_run(prefect_server, started.id, log=worker.log)
    assert run.state.is_completed(), run.state
    with prefect_server.client() as client:
        keys = {a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))}
    assert f"monitor-{MODEL}" in keys, keys
    reports = list((e2e_data["registry"] / MODEL / "versions").glob("*/reports/**/*.html"))
    assert reports, "no evidently HTML report under the version's reports/"


@pytest.mark.e2e
@pytest.mark.slow
def test_drift_event_triggers_retraining(prefect_server, deployed, trained_run, e2e_data, worker):
    """Check that a recall-drift event for a model retrains that model with the yaml's config."""
    spec = training_spec(deployed["doc"])
    automation = next(t["name"] for t in spec["triggers"] if t["expect"] == [DRIFT])
    before = {r.id for r in triggered_runs(prefect_server, automation)}
    snippet = (
        "from prefect.events import emit_event\n"
        f"emit_event(event={DRIFT!r}, resource={{'prefect.resource.id': 'rareflow.model.{MODEL}',"
        f" 'prefect.resource.name': {MODEL!r}}}, payload={{'model': {MODEL!r}, "
        "'version': 'v0001', 'reference_recall': 0.8, 'recall': 0.4})\n"
    )
    run_cli([str(VENV_BIN / "python"), "-c", snippet], env=prefect_server.env, timeout=120,
            what="emit_event")
    new = wait_until(lambda: [r for r in triggered_runs(prefect_server, automation)
                              if r.id not in before],
                     timeout=90, what=f"a run started by {automation!r}", log=worker.log)
    assert len(new) == 1
    config = new[0].parameters["config"]
    assert config["name"] == MODEL
    assert config["data"] == str(e2e_data["train"])
    assert config["registry"] == str(e2e_data["registry"])
    assert config["strategy"] == FAST_TRAINING["strategy"]
    run = wait_for_run(prefect_server, new[0].id, log=worker.log)
    assert reached_verdict(run.state), run.state  # promoted, or a Failed state named Rejected
    assert (e2e_data["registry"] / MODEL / "versions" / "v0002").is_dir()


@pytest.mark.e2e
@pytest.mark.slow
def test_data_arrived_event_triggers_training(prefect_server, deployed, e2e_data, worker):
    """Check that `prefect event emit rareflow.data.arrived` for the model trains it on the
    payload's source (a model's deployments follow that model's events only)."""
    spec = training_spec(deployed["doc"])
    automation = next(t["name"] for t in spec["triggers"] if t["expect"] == [ARRIVED])
    before = {r.id for r in triggered_runs(prefect_server, automation)}
    path = str(e2e_data["arrived"])
    for name in ("another-model", MODEL):  # the first is not this deployment's model
        run_cli([str(VENV_BIN / "prefect"), "event", "emit", ARRIVED, "--resource-id",
                 f"rareflow.model.{name}", "--payload", json.dumps({"source": path})],
                env=prefect_server.env, timeout=120, what="prefect event emit")
    new = wait_until(lambda: [r for r in triggered_runs(prefect_server, automation)
                              if r.id not in before],
                     timeout=90, what=f"a run started by {automation!r}", log=worker.log)
    assert len(new) == 1
    params = new[0].parameters
    assert params["config"]["name"] == MODEL
    assert params["trigger"] == {"event": ARRIVED, "payload": {"source": path}}
    run = wait_for_run(prefect_server, new[0].id, log=worker.log)
    assert reached_verdict(run.state), run.state  # promoted, or a Failed state named Rejected
    newest = max((e2e_data["registry"] / MODEL / "versions").iterdir(), key=lambda p: p.name)
    meta = json.loads((newest / "metadata.json").read_text())
    assert meta["config"]["data"] == path  # the payload's table, not the configured one
    assert not (e2e_data["registry"] / "another-model").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_script_serves_and_runs(prefect_server, deployed, tmp_path):
    """Check that serve.py registers the deployments without a pool and executes their runs."""
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled, Cancelling

    doc = yaml.safe_load(yaml.safe_dump(deployed["doc"]))
    for dep in doc["deployments"]:  # a separate copy beside the worker's deployments
        dep["name"] = f"{dep['name']}-served"
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = training_spec(doc)
    names = [arg for d in existing_deployments(doc) for arg in ("--name", d["name"])]
    proc = Proc("serve", [str(VENV_BIN / "python"), "-m", "deployments.serve",
                          "--prefect-file", str(path), *names],
                env=prefect_server.env, cwd=ROOT, log=prefect_server.logs / "serve.log")
    full_name = f"rareflow-train/{spec['name']}"
    dep_id, started = None, None
    try:
        def served():
            if not proc.alive():
                pytest.fail(f"serve.py exited early:\n{proc.log.read_text()[-3000:]}")
            return "are being served" in proc.log.read_text(errors="replace")

        wait_until(served, timeout=180, what="serve.py to start serving", log=proc.log)
        with prefect_server.client() as client:
            dep = client.read_deployment_by_name(full_name)
            dep_id = dep.id
            automations = client.read_resource_related_automations(f"prefect.deployment.{dep.id}")
        assert dep.work_pool_name is None
        assert dep.parameters == spec["parameters"]
        assert [s.schedule.cron for s in dep.schedules] == [spec["schedules"][0]["cron"]]
        assert {a.name for a in automations} == {t["name"] for t in spec["triggers"]}

        started = run_deployment(full_name, timeout=0)

        def picked_up():
            with prefect_server.client() as client:
                run = client.read_flow_run(started.id)
            return run if run.state.type.value in ("PENDING", "RUNNING", "COMPLETED") else None

        run = wait_until(picked_up, timeout=120, what="serve.py to start the run", log=proc.log)
        with prefect_server.client() as client:
            state = Cancelling() if run.state.is_running() else Cancelled()
            client.set_flow_run_state(run.id, state, force=True)
        wait_for_run(prefect_server, run.id, timeout=60, log=proc.log)
    finally:
        proc.stop()
        with prefect_server.client() as client:
            if started is not None:  # its process runs in a session of its own
                kill_flow_run_processes([client.read_flow_run(started.id)],
                                        prefect_server.api_url)
            if dep_id is not None:
                client.delete_resource_owned_automations(f"prefect.deployment.{dep_id}")
