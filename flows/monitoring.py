"""The monitoring flow: judge a data source (or a labelled batch) against a version's reference.

load model + reference → since when (the model's last check, its training window) → load the
source's window → score it (unless already scored) → validate against the version's schema →
rows judged on matured labels / rows awaiting labels → recall drift decision → the estimated
recall of rows awaiting labels (an early warning) → evidently reports → HTML + JSON under the
version's ``reports/`` → ``rareflow.monitor.recall-drift`` event → what was checked → artifacts.
"""

from __future__ import annotations

from prefect import flow

from schemas.config import MonitoringConfig
from tasks.data.scan import freeze_as_of
from tasks.data.window import check_time_options, monitoring_window_task
from tasks.decision.costs import DecisionCosts
from tasks.judge.plots import monitoring_plots_task
from tasks.monitor.reports import data_drift_report_task, data_drift_summary, save_reports_task
from tasks.monitor.verdict import (
    emit_if_drift,
    estimate_task,
    judge_task,
    label_roles_task,
    monitoring_result,
    publish,
    quality_report_task,
    write_summary_task,
)
from tasks.registry.monitor_state import read_state, record_check, since_last_check
from tasks.registry.open_registry import open_registry
from tasks.registry.report_home import keep_reports, model_workdir, reports_dir
from tasks.runtime.object_store_api import with_config_storage
from tasks.runtime.run_outcome import monitoring_outcome
from tasks.serving.batch_scoring import load_model_task, reference_task, scored_batch_task


@flow(name="rareflow-monitor", validate_parameters=True)
@with_config_storage
def monitoring_flow(config: MonitoringConfig) -> dict:
    """Compare a labelled batch with a version's reference: recall drift, cost, data drift
    (with ``scored``: judge each version on the rows it decided, flows/monitoring_served.py)."""
    if config.scored:
        from flows.monitoring_served import judge_served

        return monitoring_outcome(judge_served(config))
    check_time_options(config)  # an as_of or window the source can honour
    config, as_of = freeze_as_of(config)
    registry = open_registry(config.registry, config.name)
    model, meta = load_model_task(registry, config.version)
    reference = reference_task(registry, meta["version"])
    costs = DecisionCosts.from_meta(meta["costs"])
    state = read_state(registry.dir, trust=registry.trust)
    since = since_last_check(state, meta) if config.since_last_check else None
    window = monitoring_window_task(config, label=model.schema.label, as_of=as_of)
    batch = scored_batch_task(model, window.frame, rescore=config.rescore)
    roles = label_roles_task(batch, schema=model.schema, matured=window.matured,
                             maturity_time=window.maturity_time, event_time=window.event_time,
                             since=since)
    judged = judge_task(batch, roles.y, roles.judged, reference, threshold=model.threshold,
                        schema=model.schema, costs=costs, config=config)
    estimate = estimate_task(batch, roles.pending, reference, j=judged, costs=costs,
                             config=config)
    quality = quality_report_task(judged, reference, schema=model.schema,
                                  threshold=model.threshold)
    drift = data_drift_report_task(batch, reference, schema=model.schema,
                                   sample=config.drift_sample_rows,
                                   num_method=config.num_stattest,
                                   cat_method=config.cat_stattest)
    folder, paths = save_reports_task({"quality": quality, "data_drift": drift},
                                      reports_dir(registry, meta["version"]))
    result = monitoring_result(judged, meta=meta, config=config, drift=data_drift_summary(drift),
                               folder=folder, paths=paths, estimate=estimate,
                               lineage=window.lineage, since=since)
    result["judged_partitions"] = window.files_of(roles.judged)
    result["judged_from"] = window.first_time(roles.judged)  # a retraining's `since`
    result["event_id"] = emit_if_drift(result, enabled=config.emit_events)
    write_summary_task(result, folder)
    record_check(registry.dir, result, lock=registry.lock, trust=registry.trust)
    monitoring_plots_task(model_workdir(registry), result, batch, reference)
    result = keep_reports(registry, result)  # uploaded, on object storage
    publish(result)
    return monitoring_outcome(result)
