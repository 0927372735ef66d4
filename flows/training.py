"""The training flow: load → validate → split → select → fit → threshold → evaluate → gate →
register → promote."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib.metadata import version as pkg_version

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from schemas.config import TrainingConfig
from schemas.errors import RegistryError
from schemas.scored import DECISION, SCORE
from tasks import events
from tasks.evaluate import evaluate_task, metric_table, model_card
from tasks.gate import gate_task
from tasks.load import load_task, release_memory
from tasks.models import fit_task
from tasks.plots import calibration_summary, cost_curve_markdown
from tasks.registry import Registry, promote_task, register_task
from tasks.scaleout import select_on_dask
from tasks.select import candidate_specs, publish_selection, select_task
from tasks.split import cv_folds, split_task
from tasks.validate import validate_task

LIBRARIES = ("prefect", "scikit-learn", "imbalanced-learn", "pandas", "pandera", "numpy",
             "joblib", "evidently")


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = pkg_version(name)
        except Exception:  # pragma: no cover - a library missing from the environment
            out[name] = None
    return out


@task(name="score-champion", cache_policy=NO_CACHE)
def score_champion_task(registry: Registry, X_test: pd.DataFrame):
    """Score the candidate's test rows with the current champion, if there is one.

    Returns:
        (champion version or None, decisions or None, error text or None)
    """
    champion = registry.champion()
    if not champion:
        return None, None, None
    try:
        model, _ = registry.load("champion")
        return champion["version"], model.decide(X_test), None
    except Exception as exc:  # the comparison gate reports it; it does not crash training
        return champion["version"], None, f"{type(exc).__name__}: {exc}"


@flow(name="rareflow-train", validate_parameters=True)
def training_flow(config: TrainingConfig) -> dict:
    """Train, judge and (if every gate passes) promote a model for a rare-event label."""
    log = get_run_logger()
    costs, split_cfg, seed = config.costs, config.split, config.seed
    df = load_task(config.data)
    data = validate_task(df, label=config.label, positive=config.positive,
                         test_size=split_cfg.test_size, n_folds=split_cfg.n_folds,
                         schema_model=config.schema_model)
    schema = data.schema
    split = split_task(data.X, data.y, test_size=split_cfg.test_size, seed=seed)
    X_train, y_train = data.X.iloc[split.train_idx], data.y[split.train_idx]
    X_test, y_test = data.X.iloc[split.test_idx], data.y[split.test_idx]
    del df, data  # the parts are copies: free the full table before fitting
    release_memory()
    log.info("Split: %d train rows (%d positives), %d test rows (%d positives)",
             len(y_train), int(y_train.sum()), len(y_test), int(y_test.sum()))

    folds = cv_folds(y_train, n_folds=split_cfg.n_folds, seed=seed)
    specs = candidate_specs(config.strategy, positive_rate=float(y_train.mean()),
                            positives=int(y_train.sum()), rows=len(y_train),
                            has_categorical=bool(schema.categorical))
    if config.strategy.executor == "dask":  # each candidate x fold fit: a task on Dask
        best, results, timings = select_on_dask(X_train, y_train, schema, folds, specs,
                                                strategy=config.strategy, fn_cost=costs.fn_cost,
                                                fp_cost=costs.fp_cost, seed=seed)
        log.info("Dask: %d workers, cluster ready in %.1f s, fits took %.1f s wall",
                 timings["workers"], timings["cluster_start_seconds"],
                 timings["fit_wall_seconds"])
        board = publish_selection(best, results, y_train)
    else:
        timings = None
        best, board = select_task(X_train, y_train, schema, folds, specs,
                                  fn_cost=costs.fn_cost, fp_cost=costs.fp_cost, seed=seed,
                                  time_budget_s=config.strategy.time_budget_s,
                                  n_jobs=config.strategy.n_jobs,
                                  calibrate=config.strategy.calibrate)
    log.info("Chose %s: CV normalised cost %.4f, threshold %.4f (from out-of-fold scores)",
             best.spec.name, best.cv_cost, best.threshold)
    create_markdown_artifact(
        key="cost-vs-threshold",
        markdown="# Cost vs threshold (out-of-fold, training part)\n\n" + cost_curve_markdown(
            y_train, best.oof_scores, threshold=best.threshold, fn_cost=costs.fn_cost,
            fp_cost=costs.fp_cost),
    )
    fitted = fit_task(best.spec, X_train, y_train, schema, threshold=best.threshold, seed=seed,
                      fold_models=best.fold_models)
    model = fitted.model
    metrics, test_scores = evaluate_task(model, X_test, y_test, fn_cost=costs.fn_cost,
                                         fp_cost=costs.fp_cost)

    registry = Registry(config.registry, config.name)
    champ_version, champ_decisions, champ_error = score_champion_task(registry, X_test)
    verdict = gate_task(metrics, config.gates, y_test=y_test,
                        cand_decisions=model.decide(X_test, test_scores),
                        champ_decisions=champ_decisions, champion_version=champ_version,
                        champion_error=champ_error, fn_cost=costs.fn_cost,
                        fp_cost=costs.fp_cost, seed=seed)

    metadata = {
        "config": config.model_dump(mode="json"),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "threshold": model.threshold,
        "threshold_source": f"{split_cfg.n_folds}-fold out-of-fold scores on the training part",
        "costs": costs.model_dump(),
        "strategy": {"name": best.spec.name, **best.spec.as_dict(), "cv_cost": best.cv_cost,
                     "cv_cost_std": best.cv_cost_std, "oof_cost": best.oof_cost,
                     "fit_seconds": fitted.fit_seconds, **fitted.info,
                     "executor": config.strategy.executor, "dask": timings},
        "leaderboard": board.to_dict(orient="records"),
        "metrics": metrics,
        "calibration": calibration_summary(y_test, test_scores),
        "calibrated": model.calibrated,
        "verdict": verdict,
        "compared_with": champ_version,
        "fingerprints": split.fingerprints,
        "schema": schema.model_dump(),
        "libraries": library_versions(),
    }
    reference = X_test[schema.feature_names].reset_index(drop=True).assign(
        **{schema.label: np.where(y_test == 1, schema.positive, schema.negative),
           SCORE: test_scores, DECISION: model.decide(X_test, test_scores)})
    version = register_task(registry, model, metadata, reference, model_card(metadata))

    status = verdict["status"]
    if status == "passed":
        try:  # refused if a concurrent run changed the champion it was compared with
            promote_task(registry, version, reason="passed every gate",
                         expected_champion=champ_version)
        except RegistryError as exc:
            log.warning("Not promoted: %s", exc)
            status = "stale"
    promoted = status == "passed"
    payload = {"version": version, "status": status, "threshold": model.threshold,
               "recall": metrics["at_threshold"]["recall"], "pr_auc": metrics["pr_auc"],
               "normalised_cost": metrics["at_threshold"]["normalised_cost"],
               "champion": champ_version}
    if promoted:
        events.emit(events.PROMOTED, name=config.name, payload=payload)
        log.info("Promoted %s %s", config.name, version)
    else:
        events.emit(events.REJECTED, name=config.name, payload=payload)
        failed = [g["gate"] for g in verdict["gates"] if not g["passed"]]
        log.warning("Not promoted (%s): failed %s", status, failed)
    return {
        "name": config.name,
        "version": version,
        "status": status,
        "promoted": promoted,
        "champion": (registry.champion() or {}).get("version"),
        "threshold": model.threshold,
        "strategy": best.spec.name,
        "metrics": metrics,
        "metric_table": metric_table(metrics).to_dict(orient="records"),
        "verdict": verdict,
        "leaderboard": board.to_dict(orient="records"),
        "registry": str(registry.dir),
    }
