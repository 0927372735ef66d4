"""The scoring flow: score a batch with a registered version, in input order."""

from __future__ import annotations

from prefect import flow, get_run_logger

from schemas.config import ScoringConfig
from schemas.scored import DECISION
from tasks.data.tables import load_task
from tasks.registry.store import Registry
from tasks.serving.batch_scoring import load_model_task, score_task, write_task


@flow(name="rareflow-score", validate_parameters=True)
def scoring_flow(config: ScoringConfig) -> dict:
    """Score a batch with the champion (or a named version) and write it out."""
    registry = Registry(config.registry, config.name)
    model, meta = load_model_task(registry, config.version)
    scored = score_task(model, load_task(config.data))
    out = write_task(scored, config.out)
    flagged = int(scored[DECISION].sum())
    get_run_logger().info("Scored %d rows with %s %s (threshold %.4f): %d flagged; wrote %s",
                          len(scored), config.name, meta["version"], model.threshold, flagged,
                          out)
    return {"version": meta["version"], "rows": len(scored), "flagged": flagged, "out": out,
            "threshold": model.threshold}
