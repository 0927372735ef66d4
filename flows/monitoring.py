"""The monitoring flow: judge a labelled batch against a version's reference.

load model + reference → load batch → score it (unless already scored) → validate against the
version's schema → keep rows whose labels have matured → recall drift decision → expected cost →
evidently reports (classification on matured rows, data drift on sampled rows) → HTML + JSON
under the version's ``reports/`` → ``rareflow.monitor.recall-drift`` event → Prefect artifacts.
"""

from __future__ import annotations

from prefect import flow

from schemas.config import MonitoringConfig
from tasks.drift import (
    emit_if_drift,
    judge_task,
    monitoring_result,
    publish,
    quality_report_task,
    usable_labels_task,
    write_summary_task,
)
from tasks.load import load_task
from tasks.plots import monitoring_plots_task
from tasks.registry import Registry
from tasks.reports import data_drift_report_task, data_drift_summary, save_reports_task
from tasks.score import load_model_task, reference_task, scored_batch_task


@flow(name="rareflow-monitor", validate_parameters=True)
def monitoring_flow(config: MonitoringConfig) -> dict:
    """Compare a labelled batch with a version's reference: recall drift, cost, data drift."""
    registry = Registry(config.registry, config.name)
    model, meta = load_model_task(registry, config.version)
    reference = reference_task(registry, meta["version"])
    batch = scored_batch_task(model, load_task(config.data), rescore=config.rescore)
    y, usable = usable_labels_task(
        batch, schema=model.schema, label_time_column=config.label_time_column,
        label_available_column=config.label_available_column,
        delay_days=config.label_delay_days, as_of=config.as_of)
    judged = judge_task(batch, y, usable, reference, threshold=model.threshold,
                        schema=model.schema, costs=meta["costs"], config=config)
    quality = quality_report_task(judged, reference, schema=model.schema,
                                  threshold=model.threshold)
    drift = data_drift_report_task(batch, reference, schema=model.schema,
                                   sample=config.drift_sample_rows,
                                   num_method=config.num_stattest,
                                   cat_method=config.cat_stattest)
    folder, paths = save_reports_task({"quality": quality, "data_drift": drift},
                                      registry.version_dir(meta["version"]) / "reports")
    result = monitoring_result(judged, meta=meta, config=config,
                               drift=data_drift_summary(drift), folder=folder, paths=paths)
    result["event_id"] = emit_if_drift(result, enabled=config.emit_events)
    write_summary_task(result, folder)
    monitoring_plots_task(registry.dir, result, batch, reference)
    publish(result)
    return result
