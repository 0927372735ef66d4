"""What monitoring has checked, per model: ``<registry>/<name>/monitor_state.json``.

A scheduled monitor judges only the labels that matured since the model's last check, and only
rows the serving version was not trained on: its window ends at the version's ``as_of``, so a
label that matured before that may have been a training row. The state keeps the time up to
which labels were judged (``checked_until``) and the last checks; a check that could not judge
(too few matured positives) does not move it, so the next check judges those rows too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from schemas.errors import DataError
from schemas.statuses import DRIFT, NO_DRIFT
from tasks.data.labels import utc
from tasks.registry.signed_records import MAC, Trust
from tasks.runtime.durable_files import dumps, write_bytes_atomic

logger = logging.getLogger(__name__)

STATE_FILE = "monitor_state.json"
KEEP_CHECKS = 200


def read_state(model_dir: Path, *, trust: Trust | None = None) -> dict:
    """The model's monitoring state (empty before its first check), checked against its
    signature where the registry signs its records (:mod:`tasks.registry.signed_records`).

    Raises:
        IntegrityError: the state was edited, or written without the key.
    """
    path = Path(model_dir) / STATE_FILE
    if not path.is_file():
        return {"checked_until": None, "checks": []}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"monitoring state {str(path)!r} is corrupt ({exc}); delete it to "
                        "judge every matured label again") from exc
    if trust is not None:
        trust.check("monitor-state", state, where=f"monitoring state {str(path)!r}",
                    fix="delete it to judge every matured label again")
    return state


def write_state(model_dir: Path, state: dict, *, trust: Trust | None = None) -> None:
    """Write the monitoring state (sealed where the registry signs its records)."""
    body = {k: v for k, v in state.items() if k != MAC}
    if trust is not None:
        body = trust.seal("monitor-state", body)
    write_bytes_atomic(Path(model_dir) / STATE_FILE, dumps(body, sort_keys=False).encode())


def trained_as_of(meta: dict) -> pd.Timestamp | None:
    """The time a version's training window ended (None for versions before data sources)."""
    value = (meta.get("lineage") or {}).get("as_of") or (meta.get("config") or {}).get("as_of")
    return None if not value else utc(value)


def since_last_check(state: dict, meta: dict) -> pd.Timestamp | None:
    """Judge labels that matured after this: the later of the last check and the version's
    training window (None: judge every matured label)."""
    times = [t for t in (state.get("checked_until"), trained_as_of(meta)) if t]
    return max(utc(t) for t in times) if times else None


def record_check(model_dir: Path, result: dict, *, lock, trust: Trust | None = None) -> dict:
    """Add a check to the state; a judged check moves ``checked_until`` to its as_of."""
    with lock():
        state = read_state(model_dir, trust=trust)
        judged = result["decision"]["status"] in (DRIFT, NO_DRIFT)
        state["checks"] = (state.get("checks") or [])[-(KEEP_CHECKS - 1):] + [{
            "as_of": result["as_of"], "version": result["version"], "status": result["status"],
            "since": result["since"], "matured_rows": result["matured_rows"],
            "matured_positives": result["batch"]["positives"],
            "estimate": (result.get("estimate") or {}).get("status"),
            "partitions": result.get("judged_partitions", []),
        }]
        if judged and result["as_of"]:
            state["checked_until"] = max(filter(None, [state.get("checked_until"),
                                                       result["as_of"]]), key=utc)
        write_state(model_dir, state, trust=trust)
    logger.info("Monitoring state of %s: labels judged up to %s", result["name"],
                state.get("checked_until"))
    return state
