"""deployments/serve.py on a server where `prefect deploy` already made the same deployments:
it refuses to start beside them, and with --replace takes over cleanly (runs complete, no
automation left pointing at a deleted deployment)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from .conftest import (
    ROOT,
    VENV_BIN,
    Proc,
    existing_deployments,
    run_cli,
    wait_for_run,
    wait_until,
)


def clash_copy(deployed: dict, tmp_path):
    """prefect.yaml's training deployment under a name of its own, deployed to the pool."""
    doc = yaml.safe_load(yaml.safe_dump(deployed["doc"]))
    doc["deployments"] = [d for d in existing_deployments(doc)
                          if d["entrypoint"].startswith("flows/training.py")]
    for dep in doc["deployments"]:
        dep["name"] = f"{dep['name']}-clash"
        dep["schedules"] = []
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return doc, path


@pytest.mark.e2e
@pytest.mark.slow
def test_serve_refuses_then_replaces_prefect_deploys_deployments(prefect_server, deployed,
                                                                 tmp_path):
    """Check that serve.py names the clashing work-pool deployments and exits, and that with
    --replace it deletes them and their automations, serves its own and runs them."""
    from prefect.deployments import run_deployment

    doc, path = clash_copy(deployed, tmp_path)
    name = doc["deployments"][0]["name"]
    full_name = f"rareflow-train/{name}"
    env = prefect_server.env
    run_cli([str(VENV_BIN / "prefect"), "--no-prompt", "deploy", "--name", name,
             "--prefect-file", str(path)], env=env, timeout=300, what="prefect deploy")
    with prefect_server.client() as client:
        pooled = client.read_deployment_by_name(full_name)
        assert pooled.work_pool_name == deployed["pool"]
        assert client.read_resource_related_automations(f"prefect.deployment.{pooled.id}")
    serve = [str(VENV_BIN / "python"), "-m", "deployments.serve", "--prefect-file", str(path)]
    refused = subprocess.run(serve, env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=300, stdin=subprocess.DEVNULL)
    assert refused.returncode != 0
    assert "already exist" in refused.stderr and "--replace" in refused.stderr
    proc = Proc("serve-replace", [*serve, "--replace"], env=env, cwd=ROOT,
                log=prefect_server.logs / "serve-replace.log")
    new_id = None
    try:
        wait_until(lambda: "are being served" in proc.log.read_text(errors="replace"),
                   timeout=180, what="serve.py --replace to start serving", log=proc.log)
        with prefect_server.client() as client:
            served = client.read_deployment_by_name(full_name)
            new_id = served.id
            assert served.work_pool_name is None and served.id != pooled.id
            left = client.read_resource_related_automations(f"prefect.deployment.{pooled.id}")
            assert left == [], [a.name for a in left]
            assert client.read_resource_related_automations(f"prefect.deployment.{served.id}")
        started = run_deployment(full_name, timeout=0)
        run = wait_for_run(prefect_server, started.id, log=proc.log)
        assert run.state.is_completed(), (run.state, proc.log.read_text()[-3000:])
    finally:
        proc.stop()
        with prefect_server.client() as client:
            if new_id is not None:
                client.delete_resource_owned_automations(f"prefect.deployment.{new_id}")
