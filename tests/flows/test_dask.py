"""Scale-out on Dask: candidate x fold fits as Prefect tasks through prefect-dask."""

import json

import pytest
from pydantic import ValidationError

from schemas.config import StrategyConfig, TrainingConfig
from schemas.demo import LABEL
from tasks.runtime.run_outcome import run_summary

SMALL_AUTO = {"max_candidates": 3, "time_budget_s": 600}


def test_dask_address_needs_the_dask_executor():
    """Check that an address with the local executor is refused with a message naming both."""
    with pytest.raises(ValidationError, match="dask_address.*executor"):
        StrategyConfig(dask_address="tcp://127.0.0.1:8786")
    assert StrategyConfig(executor="dask", dask_address="tcp://h:8786").dask_workers == 2


def _config(data, registry, **strategy):
    return TrainingConfig(data=str(data), label=LABEL, positive="1", registry=str(registry),
                          name="fraud", strategy=StrategyConfig(**strategy))


def _fold_task_runs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200)
    return sorted(r.name for r in runs if r.name.startswith("cv-fold"))


@pytest.mark.slow
def test_dask_selection_matches_local_and_runs_as_prefect_tasks(prefect_harness, tmp_path,
                                                                  demo_small):
    """Check that on a local 2-worker cluster the flow picks what the local path picks.

    Every candidate x fold fit must be a task run of the same flow run (reported to the
    same API by the workers), and the leaderboard must equal the local one.
    """
    from flows.training import training_flow
    from tasks.registry.store import Registry

    data = tmp_path / "train.csv"
    demo_small.to_csv(data, index=False)
    local = training_flow(_config(data, tmp_path / "local", **SMALL_AUTO))
    state = training_flow(_config(data, tmp_path / "dask", executor="dask", dask_workers=2,
                                  **SMALL_AUTO), return_state=True)
    dask = run_summary(state)
    assert dask["strategy"] == local["strategy"]
    assert dask["threshold"] == pytest.approx(local["threshold"])
    costs = {r["candidate"]: r["cv_cost"] for r in local["leaderboard"]}
    assert {r["candidate"]: r["cv_cost"] for r in dask["leaderboard"]} == pytest.approx(costs)
    names = _fold_task_runs(state.state_details.flow_run_id)
    assert len(names) == 3 * 5, names  # 3 candidates x 5 folds, each a task run of this flow
    meta = Registry(tmp_path / "dask", "fraud").metadata(dask["version"])
    assert meta["strategy"]["executor"] == "dask"
    assert meta["strategy"]["dask"]["workers"] == 2
    json.dumps(meta)  # the timings are plain JSON


@pytest.mark.slow
def test_existing_cluster_by_address(prefect_harness, tmp_path, demo_small):
    """Check that the flow runs its fits on an existing cluster given by its address."""
    from distributed import LocalCluster

    from flows.training import training_flow
    from tasks.runtime.dask_cluster import current_api_url

    data = tmp_path / "train.csv"
    demo_small.to_csv(data, index=False)
    # an "existing" cluster whose operator pointed the workers at the Prefect API
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0",
                      env={"PREFECT_API_URL": current_api_url(), "OMP_NUM_THREADS": "1"}
                      ) as cluster:
        state = training_flow(
            _config(data, tmp_path / "reg", model="logreg", sampler="none",
                    class_weight="balanced", executor="dask",
                    dask_address=cluster.scheduler_address),
            return_state=True)
    result = run_summary(state)
    assert result["status"] == "passed"
    assert result["strategy"].startswith("logreg|none|balanced")  # maybe "|calibrated"
    assert len(_fold_task_runs(state.state_details.flow_run_id)) == 5


@pytest.mark.slow
def test_unreachable_scheduler_is_a_config_error(prefect_harness, tmp_path, demo_small):
    """Check that a wrong scheduler address fails with a message naming the address."""
    import socket

    from flows.training import training_flow
    from schemas.errors import ConfigError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "train.csv"
    demo_small.to_csv(data, index=False)
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConfigError, match=f"Dask scheduler at {address}"):
        training_flow(_config(data, tmp_path / "reg", model="logreg", sampler="none",
                              class_weight="none", executor="dask", dask_address=address))
    assert not (tmp_path / "reg").exists() or not any((tmp_path / "reg").rglob("champion.json"))


@pytest.mark.slow
def test_dask_safety_stop_skips_unfinished_candidates(prefect_harness, demo_small):
    """Check that when the wall-clock safety stop passes on Dask, the fits not finished are
    cancelled, their candidates reported as skipped (never as fitted), and the search log
    says it was cut short."""
    import time

    from schemas.demo import LABEL as label
    from tasks.data.split import cv_folds
    from tasks.data.validation import validate_training_data
    from tasks.decision.costs import DecisionCosts
    from tasks.search.candidates import CandidateSpec
    from tasks.search.dask_fits import dask_fit_jobs
    from tasks.search.work_plan import SearchPlan, run_search

    data = validate_training_data(demo_small, label=label, positive="1", test_size=0.2,
                                  n_folds=5)
    folds = cv_folds(data.y, n_folds=5, seed=0)
    specs = [CandidateSpec("logreg"), CandidateSpec("hgb"), CandidateSpec("rf")]
    strategy = StrategyConfig(executor="dask", dask_workers=1)
    with dask_fit_jobs(specs, data.X, data.y, data.schema, folds, strategy=strategy, seed=0,
                       deadline=time.time() + 0.01) as (fit_jobs, _):
        results, log = run_search(specs, data.y, folds, fit_jobs=fit_jobs,
                                  costs=DecisionCosts(fn_cost=10, fp_cost=1),
                                  plan=SearchPlan())
    assert [r.spec for r in results] == specs
    assert log.stopped_early == "the wall-clock safety stop"
    unfinished = [r for r in results if not r.ok]
    assert unfinished and all(r.status == "skipped" and "safety stop" in r.error
                              for r in unfinished)
