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

The cluster and its runner are :mod:`tasks.runtime.dask_cluster`'s.
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
from schemas.inference import InputSchema
from tasks.runtime.dask_cluster import connect, dask_task_runner
from tasks.search.candidates import CandidateSpec
from tasks.search.cross_validation import fit_fold

logger = logging.getLogger(__name__)


@task(name="cv-fold", cache_policy=NO_CACHE, task_run_name="cv-fold {spec.name} #{fold}")
def fold_task(spec: CandidateSpec, X: pd.DataFrame, y: np.ndarray, schema: InputSchema,
              train_pos: np.ndarray, held_pos: np.ndarray, *, fold: int, seed: int):
    """One candidate on one training fold: held-out scores, fitted model, seconds."""
    return fit_fold(spec, X, y, schema, train_pos, held_pos, seed=seed, n_jobs=1)


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
    with dask_task_runner(strategy.dask_address, strategy.dask_workers) as runner:
        client = connect(runner, strategy.dask_address, "strategy.dask_address")
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
