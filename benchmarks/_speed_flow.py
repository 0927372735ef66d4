"""Flow side of benchmarks/speed.py: rareflow's training flow, server start apart."""

import json
import sys
import time

from prefect import flow


@flow
def warm_up():
    return 1


t0 = time.perf_counter()
warm_up()  # starts Prefect's ephemeral server
start = time.perf_counter() - t0
from flows.training import training_flow  # noqa: E402  (after the server start)
from schemas.config import StrategyConfig, TrainingConfig  # noqa: E402

path, label, registry = sys.argv[1:4]
cfg = TrainingConfig(
    data=path,
    label=label,
    positive="1",
    registry=registry,
    name="speed",
    strategy=StrategyConfig(model="hgb", sampler="none", class_weight="balanced"),
)
t1 = time.perf_counter()
result = training_flow(cfg)
m = result["metrics"]
print(
    json.dumps(
        {
            "seconds": time.perf_counter() - t1,
            "server_start_seconds": start,
            "threshold": result["threshold"],
            "normalised_cost": m["at_threshold"]["normalised_cost"],
            "pr_auc": m["pr_auc"],
        }
    )
)
