"""The training flow: the run's config (from the triggering event) → preflight → load the
source's window → validate → split → select → fit → evidence → gate → register and promote
(manual approval: register as pending and announce it; flows/approval.py decides). Each step
is a task of :mod:`tasks`; docs/architecture.md maps where each lives."""

from __future__ import annotations

from prefect import flow

from schemas.config import TrainingConfig, TriggerEvent
from tasks.data.arrivals import run_config
from tasks.data.negative_sample import frozen_sample
from tasks.data.split import split_task, split_times
from tasks.data.tables import release_memory
from tasks.data.validation import min_positives_needed, validate_task
from tasks.data.window import load_source_task
from tasks.decision.costs import DecisionCosts
from tasks.judge.gates import gate_task
from tasks.registry.approval import pending_verdict
from tasks.registry.challenger import challenge_if_refused_task
from tasks.registry.champion_scores import champion_task
from tasks.registry.preflight import preflight_task
from tasks.registry.store import register_task
from tasks.registry.training_record import announce, record_task, training_summary
from tasks.runtime.object_store_api import with_config_storage
from tasks.runtime.run_outcome import training_outcome
from tasks.search.evidence import evidence_kind, evidence_task
from tasks.search.final_fit import fit_task
from tasks.search.selection import select_task


@flow(name="rareflow-train", validate_parameters=True)
@with_config_storage
def training_flow(config: TrainingConfig, trigger: TriggerEvent | None = None) -> dict:
    """Train, judge and (if every gate passes) promote a model for a rare-event label.

    ``trigger`` is the event that started the run (set by a deployment trigger): its payload's
    source and as_of replace ``config.data`` and ``config.as_of``.
    """
    config = run_config(config, trigger)
    seed, split = config.seed, config.split
    registry = preflight_task(config)
    window = load_source_task(config, needed=min_positives_needed(
        test_size=split.test_size, n_folds=split.n_folds))
    config = frozen_sample(config, window)  # a negative sample: its rate, weighed everywhere
    costs = DecisionCosts.for_training(config)
    data = validate_task(window.frame, label=config.label, positive=config.positive,
                         test_size=split.test_size, n_folds=split.n_folds,
                         schema_model=config.schema_model, cost_column=costs.fn_cost_column)
    parts = split_task(data, test_size=split.test_size, seed=seed,
                       evidence=evidence_kind(config, int(data.y.sum())),
                       times=split_times(config, window), n_folds=split.n_folds)
    window.release()  # the parts are copies: free the full table before fitting
    data.release()
    del data
    release_memory()
    selection = select_task(parts.X_train, parts.y_train, parts.schema, config=config)
    best = selection.best
    fitted = fit_task(best.spec, parts.X_train, parts.y_train, parts.schema,
                      threshold=best.threshold, seed=seed, fold_models=best.fold_models,
                      costs=costs)
    evidence = evidence_task(fitted.model, parts, config=config, kind=parts.evidence)
    champion = champion_task(registry, evidence.X)
    verdict = gate_task(evidence.candidate(parts), config.gates, champion=champion, seed=seed)
    verdict = pending_verdict(verdict, config.gates)  # manual approval: decided later
    record = record_task(config, parts, selection, fitted, evidence=evidence, verdict=verdict,
                         champion=champion, lineage=window.lineage)
    published = register_task(registry, fitted.model, record.metadata, record.reference,
                              record.card, record.files, train_rows=parts.train_rows,
                              compared_with=champion.version)
    challenge_if_refused_task(registry, published.version, verdict, config.gates)
    announce(config.name, published.version, published.status, metrics=evidence.metrics,
             verdict=verdict, threshold=fitted.model.threshold, champion=champion,
             registry=config.registry)
    return training_outcome(training_summary(
        config, published.version, published.status, champion_now=published.champion,
        fitted=fitted, selection=selection, metrics=evidence.metrics, verdict=verdict,
        registry_dir=registry.dir))
