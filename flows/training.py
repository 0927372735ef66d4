"""The training flow: the run's config (from the triggering event) → load the source's window →
validate → split → select → fit → evaluate → gate → register → promote. Each step is a task of
:mod:`tasks`; docs/architecture.md maps where each lives."""

from __future__ import annotations

from prefect import flow

from schemas.config import TrainingConfig, TriggerEvent
from tasks.evaluate import evaluate_task
from tasks.fit import fit_task
from tasks.gate import gate_task
from tasks.load import release_memory
from tasks.loop import run_config
from tasks.record import announce, record_task, training_summary
from tasks.registry import Registry, promote_if_passed, register_task
from tasks.score import champion_task
from tasks.select import select_task
from tasks.source import load_source_task
from tasks.split import split_task
from tasks.validate import min_positives_needed, validate_task


@flow(name="rareflow-train", validate_parameters=True)
def training_flow(config: TrainingConfig, trigger: TriggerEvent | None = None) -> dict:
    """Train, judge and (if every gate passes) promote a model for a rare-event label.

    ``trigger`` is the event that started the run (set by a deployment trigger): its payload's
    source and as_of replace ``config.data`` and ``config.as_of``.
    """
    config = run_config(config, trigger)
    costs, seed, split = config.costs, config.seed, config.split
    registry = Registry(config.registry, config.name)
    window = load_source_task(config, needed=min_positives_needed(
        test_size=split.test_size, n_folds=split.n_folds))
    data = validate_task(window.frame, label=config.label, positive=config.positive,
                         test_size=split.test_size, n_folds=split.n_folds,
                         schema_model=config.schema_model)
    parts = split_task(data, test_size=split.test_size, seed=seed)
    window.release()  # the parts are copies: free the full table before fitting
    data.release()
    del data
    release_memory()
    selection = select_task(parts.X_train, parts.y_train, parts.schema, config=config)
    best = selection.best
    fitted = fit_task(best.spec, parts.X_train, parts.y_train, parts.schema,
                      threshold=best.threshold, seed=seed, fold_models=best.fold_models)
    metrics, test_scores = evaluate_task(fitted.model, parts.X_test, parts.y_test,
                                         fn_cost=costs.fn_cost, fp_cost=costs.fp_cost)
    champion = champion_task(registry, parts.X_test)
    verdict = gate_task(metrics, config.gates, champion=champion, y_test=parts.y_test,
                        cand_decisions=fitted.model.decide(parts.X_test, test_scores),
                        fn_cost=costs.fn_cost, fp_cost=costs.fp_cost, seed=seed)
    record = record_task(config, parts, selection, fitted, metrics=metrics,
                         test_scores=test_scores, verdict=verdict, champion=champion,
                         lineage=window.lineage)
    version = register_task(registry, fitted.model, record.metadata, record.reference,
                            record.card)
    status, champion_now = promote_if_passed(registry, version, status=verdict["status"],
                                             compared_with=champion.version)
    announce(config.name, version, status, metrics=metrics, verdict=verdict,
             threshold=fitted.model.threshold, champion=champion)
    return training_summary(config, version, status, champion_now=champion_now, fitted=fitted,
                            selection=selection, metrics=metrics, verdict=verdict,
                            registry_dir=registry.dir)
