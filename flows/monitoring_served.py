"""The monitoring flow's steps on a scored source (``monitor --scored``): judge what was served.

scored rows (written for this model) → the versions that decided them → the source's window
→ scored rows joined with their labels by row key → matured / awaiting → each version judged
on the rows it decided, against its own reference (the main version's rows awaiting labels:
its estimated recall) → the challenger against the champion on
the same matured rows (promote with ``evidence: shadow``, ask for approval, retire, or keep
shadowing) → evidently reports of the version judged in full (the champion) → summary.json
and the ``rareflow.monitor.recall-drift`` event naming the rows and versions judged.
"""

from __future__ import annotations

from schemas.config import MonitoringConfig
from tasks.data.scan import iso, resolve_as_of
from tasks.data.window import check_time_options, monitoring_window_task
from tasks.judge.plots import monitoring_plots_task
from tasks.monitor.reports import data_drift_report_task, data_drift_summary, save_reports_task
from tasks.monitor.served import (
    after_training,
    decided_by,
    join_served_task,
    judge_versions_task,
    judged_from,
    read_scored_task,
    served_estimate_task,
    served_summary,
    versions_in_order,
    with_served,
)
from tasks.monitor.verdict import (
    emit_if_drift,
    label_roles_task,
    monitoring_result,
    publish,
    quality_report_task,
    write_summary_task,
)
from tasks.registry.monitor_state import record_check
from tasks.registry.open_registry import open_registry
from tasks.registry.report_home import keep_reports, model_workdir, reports_dir
from tasks.serving.served_versions import main_version, version_infos_task
from tasks.serving.shadow import judge_challenger_task, withhold_answered_drift


def judge_served(config: MonitoringConfig) -> dict:
    """Judge each version on the rows it decided, and the shadow challenger on live rows
    (called by ``monitoring_flow``, inside its run; returns its result)."""
    check_time_options(config)
    config = config.model_copy(update={"as_of": iso(resolve_as_of(config.as_of))})
    registry = open_registry(config.registry, config.name)
    champion = registry.champion()
    head = version_infos_task(registry, [champion["version"]] if champion else ["latest"])
    info = next(iter(head.values()))
    window = monitoring_window_task(config, label=info.schema.label)
    scored = read_scored_task(config.scored, name=config.name, window=window,
                              schema=info.schema, time_column=config.time_column,
                              data=config.data)
    served = join_served_task(scored, window, schema=info.schema, config=config)
    roles = label_roles_task(served.frame, schema=info.schema, matured=served.matured,
                             maturity_time=served.maturity_time, event_time=served.event_time,
                             since=None)
    versions = versions_in_order(served)
    infos = version_infos_task(registry, versions)
    roles = after_training(served, roles, infos)  # labels known after each version trained
    judgements = judge_versions_task(served, roles, infos, config=config)
    main = main_version(registry, versions)
    shadow = judge_challenger_task(registry, served, roles, emit_events=config.emit_events)
    j, ref, meta = judgements[main], infos[main].reference, registry.metadata(main)
    quality = quality_report_task(j, ref, schema=infos[main].schema,
                                  threshold=infos[main].threshold)
    drift = data_drift_report_task(decided_by(served, main), ref, schema=infos[main].schema,
                                   sample=config.drift_sample_rows,
                                   num_method=config.num_stattest,
                                   cat_method=config.cat_stattest)
    folder, paths = save_reports_task({"quality": quality, "data_drift": drift},
                                      reports_dir(registry, main))
    estimate = served_estimate_task(served, roles, main, infos[main], j=j, config=config)
    result = with_served(monitoring_result(j, meta=meta, config=config,
                                           drift=data_drift_summary(drift), folder=folder,
                                           paths=paths, lineage=window.lineage,
                                           estimate=estimate),
                         served_summary(served, roles, judgements), shadow)
    result["judged_from"] = judged_from(served, roles, main)  # a retraining's `since`
    result = withhold_answered_drift(result, shadow)  # a challenger answers it: no event
    result["event_id"] = emit_if_drift(result, enabled=config.emit_events
                                       and not result["drift_withheld"])
    write_summary_task(result, folder)
    record_check(registry.dir, result, lock=registry.lock, trust=registry.trust)
    monitoring_plots_task(model_workdir(registry), result, j.matured, ref)
    result = keep_reports(registry, result)  # uploaded, on object storage
    publish(result)
    return result
