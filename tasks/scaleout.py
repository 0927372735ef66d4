"""Scale-out of the candidate x fold evaluation on Dask, through prefect-dask.

With ``strategy.executor: dask`` every (candidate, fold) fit of the auto strategy is one
Prefect task run submitted to a :class:`prefect_dask.DaskTaskRunner`: on a local cluster
started for the run (``strategy.dask_workers`` processes, one thread each), or on an existing
cluster at ``strategy.dask_address``. The training part is scattered to the workers once
(by reference, never hashed); each task fits one fold and returns the held-out scores and
the fitted fold model. Everything after that (thresholds, blends, the choice, calibration)
is the same code as the local path, so both give the same strategy for the same seed.

The workers of a local cluster report their task runs to the same Prefect API as the
flow (the ephemeral server's address is passed to them). Workers of an existing cluster
must have ``PREFECT_API_URL`` set to the server the flow uses; see docs/production.md.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import StrategyConfig
from schemas.errors import ConfigError
from schemas.inference import InputSchema
from tasks.models import CandidateSpec
from tasks.select import (
    FAILED,
    SKIPPED,
    CVResult,
    _failed,
    assemble,
    finish_selection,
    fit_fold,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20  # an unreachable scheduler fails the run after this long


@task(name="cv-fold", cache_policy=NO_CACHE, task_run_name="cv-fold {spec.name} #{fold}")
def fold_task(spec: CandidateSpec, X: pd.DataFrame, y: np.ndarray, schema: InputSchema,
              train_pos: np.ndarray, held_pos: np.ndarray, *, fold: int, seed: int):
    """One candidate on one training fold: held-out scores, fitted model, seconds."""
    return fit_fold(spec, X, y, schema, train_pos, held_pos, seed=seed, n_jobs=1)


def current_api_url() -> str | None:
    """The Prefect API this process talks to (the ephemeral server's address included)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return str(client.api_url).rstrip("/")
    except Exception:  # pragma: no cover - no API reachable: workers fall back to their own
        return None


def dask_task_runner(strategy: StrategyConfig):
    """A DaskTaskRunner for ``strategy``: an existing cluster's address, or a local one."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - prefect-dask is a dependency
        raise ConfigError("strategy.executor 'dask' needs prefect-dask: pip install "
                          "prefect-dask") from exc
    if strategy.dask_address:
        return DaskTaskRunner(address=strategy.dask_address,
                              client_kwargs={"timeout": CONNECT_TIMEOUT_S})
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    api_url = current_api_url()
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": strategy.dask_workers, "threads_per_worker": 1, "processes": True,
        "dashboard_address": ":0", "env": env,
    })


def cross_validate_on_dask(
    specs: list[CandidateSpec],
    X: pd.DataFrame,
    y: np.ndarray,
    schema: InputSchema,
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    strategy: StrategyConfig,
    fn_cost: float,
    fp_cost: float,
    seed: int,
) -> tuple[list[CVResult], dict]:
    """Every (candidate, fold) fit as a Prefect task on Dask; one CV result per candidate.

    All fits are submitted at once, candidates in order. When ``strategy.time_budget_s``
    runs out, fits not yet finished are cancelled and their candidates reported as skipped
    (the first candidate is always waited for). A fit that raises fails its candidate only.

    Returns:
        (results in ``specs`` order, timings: cluster start, scatter and fit wall seconds)
    """
    if not specs:
        raise ConfigError("no candidate strategy fits this data and configuration; "
                          "set strategy.model, sampler and class_weight to 'auto'")
    import distributed

    deadline = time.time() + strategy.time_budget_s
    timings = {}
    started = time.perf_counter()
    with dask_task_runner(strategy) as runner:
        try:
            client = runner.client  # starts (or connects to) the cluster
        except (OSError, TimeoutError) as exc:
            where = strategy.dask_address or "a local cluster"
            raise ConfigError(f"cannot reach the Dask scheduler at {where} "
                              f"(strategy.dask_address): {exc}") from exc
        n_workers = len(client.scheduler_info().get("workers", {}))
        timings["cluster_start_seconds"] = time.perf_counter() - started
        logger.info("Dask cluster with %d workers ready in %.1f s", n_workers,
                    timings["cluster_start_seconds"])
        t = time.perf_counter()
        X_ref, y_ref = client.scatter([X, y], broadcast=True, hash=False)
        timings["scatter_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        futures = [
            [runner.submit(fold_task, parameters={
                "spec": spec, "X": X_ref, "y": y_ref, "schema": schema, "train_pos": tr,
                "held_pos": held, "fold": k, "seed": seed})
             for k, (tr, held) in enumerate(folds)]
            for spec in specs
        ]
        wrapped = [f.wrapped_future for per_spec in futures for f in per_spec]
        with distributed.Client.as_current(client):
            distributed.wait([f.wrapped_future for f in futures[0]])  # the first always runs
            with contextlib.suppress(TimeoutError, distributed.TimeoutError):
                distributed.wait(wrapped, timeout=max(0.001, deadline - time.time()))
        not_done = {f for f in wrapped if not f.done()}
        if not_done:
            client.cancel(list(not_done))
        results = []
        for spec, per_spec in zip(specs, futures, strict=True):
            if any(f.wrapped_future in not_done for f in per_spec):
                results.append(_failed(spec, len(y), SKIPPED, "time budget of "
                                       f"{strategy.time_budget_s:g} s spent"))
                continue
            try:
                outputs = [f.result() for f in per_spec]
                r = assemble(spec, y, folds, outputs, fn_cost=fn_cost, fp_cost=fp_cost)
            except Exception as exc:  # a candidate that cannot fit is reported, not fatal
                logger.warning("Candidate %s failed: %s", spec.name, exc)
                r = _failed(spec, len(y), FAILED, f"{type(exc).__name__}: {exc}")
            else:
                logger.info("Candidate %-28s CV cost %.4f ± %.4f  PR AUC %.3f  (%.1f s of fits)",
                            r.spec.name, r.cv_cost, r.cv_cost_std, r.pr_auc, r.fit_seconds)
            results.append(r)
        timings["fit_wall_seconds"] = time.perf_counter() - t
        timings["workers"] = n_workers
    return results, timings


def select_on_dask(X, y, schema, folds, specs, *, strategy: StrategyConfig, fn_cost: float,
                   fp_cost: float, seed: int):
    """The auto strategy with its fits on Dask; the same choice as ``select_strategy``."""
    results, timings = cross_validate_on_dask(specs, X, y, schema, folds, strategy=strategy,
                                              fn_cost=fn_cost, fp_cost=fp_cost, seed=seed)
    best, results = finish_selection(results, y, folds, fn_cost=fn_cost, fp_cost=fp_cost,
                                     time_budget_s=strategy.time_budget_s,
                                     calibrate=strategy.calibrate)
    return best, results, timings
