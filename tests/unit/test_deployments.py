"""A model's generated deployments (tasks/runtime/deployments.py, `rareflow deploy init`): the
shipped
deployments/prefect.yaml is the demo's output, triggers match only the model's own events, and
existing files are not overwritten without --force."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_config import project_defaults
from flows.cli_errors import CliState
from schemas.config import MonitoringConfig, TrainingConfig
from schemas.errors import ConfigError
from tasks.runtime.deployments import (
    DEMO,
    DEMO_OUT_DIR,
    ModelDeployment,
    deployment_names,
    render_prefect_yaml,
    write_deployment_files,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deployments" / "prefect.yaml"
FRAUD = ModelDeployment(name="fraud", data="data/tx", label="chargeback", positive="yes",
                        registry="models", time_column="ts")


def run(*args):
    return CliRunner().invoke(app, list(args), obj=CliState())


def deployments(text: str) -> dict:
    return {d["name"]: d for d in yaml.safe_load(text)["deployments"]}


def server_trigger(spec: dict):
    """A prefect.yaml trigger as the server evaluates it."""
    from prefect.events.schemas.automations import EventTrigger as ClientTrigger
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.server.events.schemas.automations import EventTrigger

    client = DeploymentEventTrigger.model_validate(spec)
    return EventTrigger.model_validate(client.model_dump(include=set(ClientTrigger.model_fields)))


def received(event: str, model: str):
    import uuid
    from datetime import UTC, datetime

    from prefect.server.events.schemas.events import ReceivedEvent

    return ReceivedEvent(event=event, resource={"prefect.resource.id": f"rareflow.model.{model}"},
                         payload={"source": "x"}, id=uuid.uuid4(), occurred=datetime.now(UTC))


def test_shipped_prefect_yaml_is_the_generators_output_for_the_demo():
    """Check that deployments/prefect.yaml equals what `rareflow deploy init` writes for the
    demo (so the two cannot drift), and that its header names that command."""
    text = render_prefect_yaml(DEMO, DEMO_OUT_DIR)
    assert SHIPPED.read_text() == text, (
        f"deployments/prefect.yaml differs from the generator's output: run `{DEMO.command()} "
        f"--out-dir {DEMO_OUT_DIR} --force` (or edit tasks/runtime/deployments.py)")
    assert f"#   {DEMO.command(DEMO_OUT_DIR)}\n" in text
    assert "--prefect-file deployments/prefect.yaml" in text


def test_generated_deployments_carry_the_models_label_source_and_registry():
    """Check that every config of a generated prefect.yaml is the model's and validates."""
    doc = yaml.safe_load(render_prefect_yaml(FRAUD))
    deps = {d["name"]: d for d in doc["deployments"]}
    names = deployment_names("fraud")
    assert set(deps) == set(names.values())
    retrain, monitor = deps[names["retrain"]], deps[names["monitor"]]
    configs = [retrain["parameters"]["config"],
               *[t["parameters"]["config"] for t in retrain["triggers"]]]
    for config in configs:
        cfg = TrainingConfig.model_validate(config)
        assert (cfg.data, cfg.label, cfg.positive, cfg.registry, cfg.name) == (
            "data/tx", "chargeback", "yes", "models", "fraud")
        assert (cfg.time_column, cfg.window) == ("ts", "90d")
    mon = MonitoringConfig.model_validate(monitor["parameters"]["config"])
    assert (mon.data, mon.registry, mon.name, mon.window) == ("data/tx", "models", "fraud", "60d")
    assert [s["cron"] for s in retrain["schedules"]] == ["0 2 * * *"]
    assert [s["cron"] for s in monitor["schedules"]] == ["0 6 * * *"]
    assert retrain["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    approve = deps[names["approve"]]
    assert approve["entrypoint"] == "flows/approval.py:approval_flow"
    assert "schedules" not in approve and "concurrency_limit" not in approve
    (trigger,) = approve["triggers"]
    assert trigger["expect"] == ["rareflow.model.approval-requested"]
    assert trigger["parameters"] == {"registry": "{{ event.payload.registry }}",
                                     "name": "fraud", "version": "{{ event.payload.version }}"}
    for dep in deps.values():
        assert dep["work_pool"]["name"] == "rareflow"
        for trig in dep.get("triggers") or []:
            assert trig["match"] == {"prefect.resource.id": "rareflow.model.fraud"}


def test_prefect_reads_the_generated_file():
    """Check that the generated file validates as `prefect deploy` reads it."""
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(yaml.safe_load(render_prefect_yaml(FRAUD)))
    assert {d.name for d in model.deployments} == set(deployment_names("fraud").values())


@pytest.mark.parametrize("event", ["rareflow.data.arrived", "rareflow.monitor.recall-drift",
                                   "rareflow.model.approval-requested"])
def test_another_models_events_do_not_start_the_demos_runs(event):
    """Check that the shipped triggers fire on the demo's events only: a second model's event
    (here rareflow.data.arrived for `fraud`) matches none of them."""
    doc = yaml.safe_load(SHIPPED.read_text())
    triggers = [server_trigger(t) for d in doc["deployments"] for t in d.get("triggers") or []
                if t["expect"] == [event]]
    assert triggers
    for trigger in triggers:
        assert trigger.covers(received(event, "demo"))
        assert not trigger.covers(received(event, "fraud"))
        assert not trigger.covers(received(event, "demo2"))


def test_deploy_init_writes_both_files_and_refuses_to_overwrite(tmp_path):
    """Check that `rareflow deploy init` writes prefect.yaml and rareflow.yaml, and refuses
    (exit 2, one line, nothing written) to overwrite them without --force."""
    args = ["deploy", "init", "--name", "fraud", "--data", "data/tx", "--label", "chargeback",
            "--positive", "yes", "--registry", "models", "--time-column", "ts",
            "--out-dir", str(tmp_path)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    written = (tmp_path / "prefect.yaml").read_text()
    assert written == render_prefect_yaml(FRAUD, tmp_path)
    assert project_defaults(cwd=tmp_path, env={}) == {"registry": "models", "name": "fraud"}
    (tmp_path / "rareflow.yaml").write_text("registry: mine\nname: mine\n")
    again = run(*args)
    assert again.exit_code == 2
    assert "exists: pass --force" in again.output
    assert (tmp_path / "rareflow.yaml").read_text() == "registry: mine\nname: mine\n"
    forced = run(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert project_defaults(cwd=tmp_path, env={})["name"] == "fraud"


@pytest.mark.parametrize("spec, message", [
    (ModelDeployment(name="bad/name", data="d", label="y"), "--name"),
    (ModelDeployment(name="m", data="d.csv", label="y", window="90d"), "--time-column"),
    (ModelDeployment(name="m", data="d", label="y", time_column="t", window="soon"), "--window"),
    (ModelDeployment(name="m", data="d", label="y", scored="d/scored"), "--scored"),
])
def test_options_no_run_could_use_are_refused(tmp_path, spec, message):
    """Check that a bad name, a time window without a time column or a malformed window is
    refused with the option named, before any file is written."""
    with pytest.raises(ConfigError, match=message):
        write_deployment_files(spec, tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_production_guides_deploy_init_example_writes_what_it_says(tmp_path, monkeypatch):
    """Check that docs/production.md's `rareflow deploy init` example, run as written, writes
    the files and deployments the guide names, ready for its `prefect deploy` line."""
    import re
    import shlex

    docs = (ROOT / "docs" / "production.md").read_text()
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", docs, flags=re.DOTALL)
                if b.startswith("rareflow deploy init")]
    init, deploy = block.replace("\\\n", " ").strip().splitlines()
    monkeypatch.chdir(tmp_path)
    result = run(*shlex.split(init)[1:])
    assert result.exit_code == 0, result.output
    prefect_file = shlex.split(deploy)[-1]
    assert deploy.startswith("prefect --no-prompt deploy --all --prefect-file ")
    deps = deployments((tmp_path / prefect_file).read_text())
    assert set(deps) == {"retrain-fraud", "monitor-fraud", "approve-fraud", "score-fraud"}
    for name in deps:
        assert f"`{name}`" in docs
    assert (tmp_path / prefect_file).with_name("rareflow.yaml").is_file()


def test_score_deployment_scores_the_models_source_on_arrival_one_run_at_a_time():
    """Check that `score-<name>` scores the model's source into `<source>-scored` (or
    --scored) with its id column, on the model's rareflow.data.arrived and hourly, one run at a
    time with later runs queued (each run scores only what is not scored yet), and that
    deployments/serve.py builds it with that limit."""
    from schemas.scoring import ScoringConfig

    spec = ModelDeployment(name="fraud", data="data/tx", label="y", time_column="ts",
                           id_column="tx_id")
    score = deployments(render_prefect_yaml(spec))["score-fraud"]
    cfg = ScoringConfig.model_validate(score["parameters"]["config"])
    assert (cfg.data, cfg.out, cfg.id_column, cfg.time_column, cfg.name) == (
        "data/tx", "data/tx-scored", "tx_id", "ts", "fraud")
    assert score["entrypoint"] == "flows/scoring.py:scoring_flow"
    assert score["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert [s["cron"] for s in score["schedules"]] == ["30 * * * *"]
    (trigger,) = score["triggers"]
    assert trigger["expect"] == ["rareflow.data.arrived"]
    assert server_trigger(trigger).covers(received("rareflow.data.arrived", "fraud"))
    assert not server_trigger(trigger).covers(received("rareflow.data.arrived", "other"))
    assert trigger["parameters"]["config"] == score["parameters"]["config"]
    elsewhere = ModelDeployment(name="fraud", data="data/tx", label="y", scored="out/s")
    assert deployments(render_prefect_yaml(elsewhere))["score-fraud"]["parameters"][
        "config"]["out"] == "out/s"

    from deployments.serve import build_deployments

    (served,) = build_deployments(SHIPPED, names=["score-demo"])
    assert served.concurrency_limit == 1
    assert served.concurrency_options.collision_strategy.value == "ENQUEUE"
    assert [t.expect for t in served.triggers] == [{"rareflow.data.arrived"}]
