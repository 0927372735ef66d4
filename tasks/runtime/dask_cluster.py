"""The Dask cluster a run spreads its tasks over, through prefect-dask: an existing cluster's
scheduler address, or a local cluster of worker processes (one thread each) started for the
run. Training fans out its candidate x fold fits here (:mod:`tasks.search.dask_fits`), scoring
its partitions (:mod:`tasks.serving.spread_scoring`).

The workers of a local cluster report their task runs to the same Prefect API as the flow
(the ephemeral server's address is passed to them). Workers of an existing cluster must have
``PREFECT_API_URL`` set to the server the flow uses; see docs/production.md.
"""

from __future__ import annotations

import logging

from schemas.errors import ConfigError

CONNECT_TIMEOUT_S = 20  # an unreachable scheduler fails the run after this long


def current_api_url() -> str | None:
    """The Prefect API this process talks to (the ephemeral server's address included)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return str(client.api_url).rstrip("/")
    except Exception:  # pragma: no cover - no API reachable: workers fall back to their own
        return None


def dask_task_runner(address: str | None, workers: int):
    """A DaskTaskRunner on the cluster at ``address``, or on a local one of ``workers``
    processes."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - prefect-dask is a dependency
        raise ConfigError("executor 'dask' needs prefect-dask: pip install prefect-dask"
                          ) from exc
    if address:
        return DaskTaskRunner(address=address, client_kwargs={"timeout": CONNECT_TIMEOUT_S})
    # the local cluster's scheduler and nannies run in this process: their start/stop chatter
    # (about 30 INFO lines a run) stays out of the user's terminal; warnings still show
    logging.getLogger("distributed").setLevel(logging.WARNING)
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    api_url = current_api_url()
    if api_url:
        env["PREFECT_API_URL"] = api_url
    # the worker processes log only what is critical: when a run stops on bad input, a worker's
    # heartbeat can race the closing scheduler and print a traceback under the one-line error
    # (a task's own failure still reaches the flow as its exception)
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": workers, "threads_per_worker": 1, "processes": True,
        "dashboard_address": ":0", "env": env, "silence_logs": logging.CRITICAL,
    })


def connect(runner, address: str | None, setting: str):
    """The runner's Dask client (starting a local cluster or connecting to one).

    Raises:
        ConfigError: the scheduler cannot be reached, naming the ``setting`` that gave it.
    """
    try:
        return runner.client
    except (OSError, TimeoutError) as exc:
        where = address or "a local cluster"
        raise ConfigError(f"cannot reach the Dask scheduler at {where} ({setting}): {exc}"
                          ) from exc
