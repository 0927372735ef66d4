"""Flow side of benchmarks/speed.py: rareflow's training flow, server start apart."""

import json
import sys
import time

from _rss import rss_mb  # benchmarks/ is this script's folder
from prefect import flow


@flow
def warm_up():
    return 1


t0 = time.perf_counter()
warm_up()  # starts Prefect's ephemeral server
start = time.perf_counter() - t0
from flows.training import training_flow  # noqa: E402  (after the server start)
from schemas.config import StrategyConfig, TrainingConfig  # noqa: E402
from tasks.runtime.run_outcome import run_summary  # noqa: E402

path, label, registry = sys.argv[1:4]
extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}  # e.g. a source's time_column
cfg = TrainingConfig(
    data=path,
    label=label,
    positive="1",
    registry=registry,
    name="speed",
    strategy=StrategyConfig(model="hgb", sampler="none", class_weight="balanced"),
    **extra,
)


rss_before_data = rss_mb()
t1 = time.perf_counter()
state = training_flow(cfg, return_state=True)
seconds = time.perf_counter() - t1
result = run_summary(state)
m = result["metrics"]


def task_seconds(flow_run_id) -> dict:
    """Run time of each task of the flow run, by task name (where the time went)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200)
    out = {}
    for r in runs:
        name = r.name.rsplit("-", 1)[0]
        out[name] = round(out.get(name, 0.0) + r.total_run_time.total_seconds(), 2)
    return out


print(
    json.dumps(
        {
            "seconds": seconds,
            "rss_before_data_mb": rss_before_data,
            "task_seconds": task_seconds(state.state_details.flow_run_id),
            "server_start_seconds": start,
            "threshold": result["threshold"],
            "normalised_cost": m["at_threshold"]["normalised_cost"],
            "pr_auc": m["pr_auc"],
        }
    )
)
