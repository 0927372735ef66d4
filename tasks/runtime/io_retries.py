"""How Prefect retries an I/O task: twice, on transient errors only (``IO_RETRIES``)."""

from __future__ import annotations

from schemas.errors import RareflowError, storage_error


def retry_transient(task, task_run, state) -> bool:
    """Retry I/O tasks on transient errors only: a RareflowError is a verdict, and a full or
    read-only disk stays so, not a glitch."""
    return not isinstance(state.data, RareflowError) and storage_error(state.data) is None


IO_RETRIES = {"retries": 2, "retry_delay_seconds": [1, 3], "retry_condition_fn": retry_transient}
