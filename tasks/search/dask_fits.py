"""Scale-out of the candidate x fold evaluation on Dask, through prefect-dask.

With ``strategy.executor: dask`` every (candidate, fold) fit of the auto strategy is one
Prefect task run submitted to a :class:`prefect_dask.DaskTaskRunner`: on a local cluster
started for the run (``strategy.dask_workers`` processes, one thread each), or on an existing
cluster at ``strategy.dask_address``. The training part is scattered to the workers once
(by reference, never hashed); each task fits one fold and returns the held-out scores and
the fitted fold model. The work plan (which fits, in which order, which candidates go on
after screening: :mod:`tasks.search.work_plan`) and everything after it (thresholds, blends, the
choice, calibration) is the same code as the local path, so both give the same strategy for
the same seed.

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
from tasks.search.candidates import CandidateSpec
from tasks.search.cross_validation import fit_fold

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


def connect(runner, strategy: StrategyConfig):
    """The runner's Dask client (starting a local cluster or connecting to one)."""
    try:
        return runner.client
    except (OSError, TimeoutError) as exc:
        where = strategy.dask_address or "a local cluster"
        raise ConfigError(f"cannot reach the Dask scheduler at {where} "
                          f"(strategy.dask_address): {exc}") from exc


def wait_until(client, futures: list, deadline: float | None) -> set:
    """Wait for the futures until ``deadline``; the ones not finished are cancelled.

    Returns:
        The wrapped Dask futures that had not finished.
    """
    import distributed

    wrapped = [f.wrapped_future for f in futures]
    timeout = None if deadline is None else max(0.001, deadline - time.time())
    with distributed.Client.as_current(client), contextlib.suppress(
            TimeoutError, distributed.TimeoutError):
        distributed.wait(wrapped, timeout=timeout)
    not_done = {f for f in wrapped if not f.done()}
    if not_done:
        logger.warning("Wall-clock safety stop reached: %d fits cancelled", len(not_done))
        client.cancel(list(not_done))
    return not_done


@contextlib.contextmanager
def dask_fit_jobs(specs: list[CandidateSpec], X: pd.DataFrame, y: np.ndarray,
                  schema: InputSchema, folds: list[tuple[np.ndarray, np.ndarray]], *,
                  strategy: StrategyConfig, seed: int, deadline: float | None = None):
    """A ``fit_jobs`` (see :func:`tasks.search.work_plan.run_search`) that runs every (candidate,
    fold)
    fit of a batch as a Prefect task on Dask, all at once; and the timings it records.

    The training part is scattered to the workers once (by reference, never hashed).
    """
    started = time.perf_counter()
    with dask_task_runner(strategy) as runner:
        client = connect(runner, strategy)
        timings = {"workers": len(client.scheduler_info().get("workers", {})),
                   "cluster_start_seconds": time.perf_counter() - started}
        logger.info("Dask cluster with %d workers ready in %.1f s", timings["workers"],
                    timings["cluster_start_seconds"])
        t = time.perf_counter()
        X_ref, y_ref = client.scatter([X, y], broadcast=True, hash=False)
        timings["scatter_seconds"] = time.perf_counter() - t

        def run(jobs: list[tuple[int, int]]) -> dict:
            futures = {(i, k): runner.submit(fold_task, parameters={
                "spec": specs[i], "X": X_ref, "y": y_ref, "schema": schema,
                "train_pos": folds[k][0], "held_pos": folds[k][1], "fold": k, "seed": seed})
                for i, k in jobs}
            not_done = wait_until(client, list(futures.values()), deadline)
            out = {}
            for job, future in futures.items():
                if future.wrapped_future in not_done:
                    continue
                try:
                    out[job] = future.result()
                except Exception as exc:  # a candidate that cannot fit is reported
                    out[job] = exc
            return out

        t = time.perf_counter()
        yield run, timings
        timings["fit_wall_seconds"] = time.perf_counter() - t
