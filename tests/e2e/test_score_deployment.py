"""The shipped `score-<name>` deployment on a real Prefect server backed by PostgreSQL (the
loop test's fixtures), with a process worker: `rareflow ingest` → rareflow.data.arrived →
the new partitions are scored with the champion; a new champion scores the next arrival; a
burst of events and a manual run rescore nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import scoring_model as sm
import yaml

from schemas.scored import MODEL_VERSION, STATE_FILE

from .conftest import (
    PREFECT_YAML,
    ROOT,
    VENV_BIN,
    Proc,
    automation_name,
    deployment_of,
    retarget_prefect_yaml,
    run_cli,
    stop_unfinished_runs,
    wait_for_run,
    wait_until,
)
from .test_loop_postgres import pg_server, postgres, runs_by  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL, ARRIVED = "served", "rareflow.data.arrived"
RUN_S = 300


@pytest.fixture(scope="module")
def served(pg_server, tmp_path_factory):  # noqa: F811 - the imported fixture
    """The shipped score deployment for model `served` (its source, registry, id column),
    deployed to a process pool with a worker; a champion v0001 in the registry."""
    base = tmp_path_factory.mktemp("served")
    source, registry = base / "source", base / "registry"
    doc = retarget_prefect_yaml(yaml.safe_load(PREFECT_YAML.read_text()), data=str(source),
                                registry=str(registry), monitoring_data=str(source),
                                source_options={"time_column": "event_time"}, name=MODEL)
    doc["deployments"] = [deployment_of(doc, "flows/scoring.py")]
    dep = doc["deployments"][0]
    for params in [dep["parameters"], *[t["parameters"] for t in dep["triggers"]]]:
        params["config"]["id_column"] = "id"
    path = base / "prefect.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    sm.publish(registry, name=MODEL)
    env, prefect = pg_server.env, str(VENV_BIN / "prefect")
    run_cli([prefect, "work-pool", "create", "rareflow", "--type", "process"], env=env,
            timeout=120, what="prefect work-pool create")
    run_cli([prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(path)], env=env,
            timeout=300, what="prefect deploy")
    worker = Proc("worker", [prefect, "worker", "start", "--pool", "rareflow", "--type",
                             "process"], env=env, cwd=ROOT, log=pg_server.logs / "worker.log")
    try:
        yield {"doc": doc, "source": source, "registry": registry, "worker": worker,
               "out": Path(dep["parameters"]["config"]["out"]), "base": base}
    finally:
        stop_unfinished_runs(pg_server, worker)


def ingest(server, served: dict, frame: pd.DataFrame, name: str) -> None:
    batch = served["base"] / f"{name}.csv"
    frame.to_csv(batch, index=False)
    run_cli([str(VENV_BIN / "rareflow"), "ingest", "--data", str(batch), "--source",
             str(served["source"]), "--name", MODEL, "--time-column", "event_time"],
            env=server.env, timeout=300, what="rareflow ingest")


def scored_state(served: dict) -> dict:
    path = served["out"] / STATE_FILE
    return json.loads(path.read_text())["partitions"] if path.is_file() else {}


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def arrival_runs_completed(server, served: dict, count: int) -> list:
    automation = automation_name(served["doc"], ARRIVED)
    runs = wait_until(lambda: (r := runs_by(server, automation, MODEL)) and len(r) >= count
                      and r, timeout=120, what=f"{count} runs of {automation!r}",
                      log=served["worker"].log)
    for run in runs:
        done = wait_for_run(server, run.id, timeout=RUN_S, log=served["worker"].log)
        assert done.state.is_completed(), (done.state, done.state.message)
    return runs


def test_arrivals_are_scored_by_the_champion_of_the_day_and_once(pg_server, served):  # noqa: F811
    """Check that an ingest's event has the new partitions scored with the champion (v0001);
    after promoting v0002 the next arrival is scored by v0002 and the earlier partitions are
    untouched; a burst of three more events and a manual run of the deployment write
    nothing new."""
    from prefect.deployments import run_deployment

    worker = served["worker"]
    wait_until(lambda: worker.alive() and "started" in worker.log.read_text(errors="replace"),
               timeout=120, what="the worker to start", log=worker.log)
    ingest(pg_server, served, pd.concat([sm.rows(300), sm.rows(200, seed=1, day="2026-11-02",
                                                             first_id=300)]), "first")
    arrival_runs_completed(pg_server, served, 1)
    first = scored_state(served)
    assert len(first) == 2 and {e["version"] for e in first.values()} == {"v0001"}
    assert sum(e["rows"] for e in first.values()) == 500
    before = {k: v for k, v in snapshot(served["out"]).items() if k != STATE_FILE}

    sm.publish(served["registry"], seed=1, threshold=0.3, name=MODEL)  # promoted: v0002
    ingest(pg_server, served, sm.rows(100, seed=2, day="2026-11-03", first_id=1_000), "second")
    arrival_runs_completed(pg_server, served, 2)
    second = scored_state(served)
    (new,) = set(second) - set(first)
    assert new.startswith("date=2026-11-03/") and second[new]["version"] == "v0002"
    frame = pd.read_parquet(served["out"] / new)
    assert set(frame[MODEL_VERSION]) == {"v0002"} and len(frame) == 100
    after = snapshot(served["out"])
    assert {k: after[k] for k in before} == before  # decided by v0001, kept as decided

    snippet = ("from prefect.events import emit_event\n"
               "for i in range(3):\n"
               f"    emit_event(event={ARRIVED!r}, resource={{'prefect.resource.id': "
               f"'rareflow.model.{MODEL}'}}, payload={{'source': {str(served['source'])!r}}})\n")
    run_cli([str(VENV_BIN / "python"), "-c", snippet], env=pg_server.env, timeout=120,
            what="emit a burst of events")
    arrival_runs_completed(pg_server, served, 5)
    manual = run_deployment(f"rareflow-score/score-{MODEL}", timeout=0)
    assert wait_for_run(pg_server, manual.id, timeout=RUN_S,
                        log=worker.log).state.is_completed()
    assert snapshot(served["out"]) == after
    assert scored_state(served) == second
