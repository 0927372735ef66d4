"""Where a run's work goes: this process, or a Dask cluster (settings shared by training's
candidate search and a source's scoring)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

Executor = Literal["local", "dask"]
DASK_WORKERS = 2  # worker processes of a local Dask cluster started for a run


def dask_address_field():
    return Field(None, description="Scheduler address of an existing Dask cluster, e.g. "
                 "tcp://10.0.0.5:8786 (executor `dask`); default: a local cluster started for "
                 "the run.")


def dask_workers_field():
    return Field(DASK_WORKERS, ge=1, le=256, description="Worker processes of the local Dask "
                 "cluster (1 thread each).")


def check_dask_address(address: str | None, executor: str, prefix: str = "") -> None:
    """An address names a cluster only the Dask executor uses.

    Raises:
        ValueError: ``address`` is set with another executor (naming ``prefix`` + setting).
    """
    if address and executor != "dask":
        raise ValueError(f"{prefix}dask_address is set but {prefix}executor is "
                         f"{executor!r}: set executor to 'dask' to use the cluster")
