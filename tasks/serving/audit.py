"""Auditing a decision: which version decided a row of a scored source, when, at which
threshold, with which signature, and whether that version served as champion then
(``rareflow audit ROW_KEY --scored SCORED``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from schemas.errors import DataError
from schemas.scored import (
    CHALLENGER_DECISION,
    CHALLENGER_SCORE,
    CHALLENGER_VERSION,
    DECISION,
    MODEL_SIGNATURE,
    MODEL_VERSION,
    SCORE,
    SCORED_AT,
    STATE_FILE,
    STATE_MODEL,
    STATE_PARTITIONS,
    THRESHOLD,
)
from tasks.registry.open_registry import open_registry
from tasks.registry.store import Registry
from tasks.runtime.object_store import open_store, read_json, readable
from tasks.serving.scored_source import scored_relpath, signature_digest


@dataclass
class Decision:
    """One scored row and what the registry says about its version."""

    key_column: str
    key: str
    partition: str
    row: dict
    role: str
    signature_now: str | None

    def lines(self) -> list[str]:
        r = self.row
        stamp = pd.Timestamp(r[SCORED_AT]).isoformat()
        lines = [f"{self.key_column}={self.key} in scored partition {self.partition}",
                 f"  decided by {r[MODEL_VERSION]} at {stamp}: score {r[SCORE]:.6f}, threshold "
                 f"{r[THRESHOLD]:.6f} -> decision {r[DECISION]}",
                 f"  signature {r[MODEL_SIGNATURE] or 'none (unsigned version)'}: "
                 + ("matches the registry's version today"
                    if r[MODEL_SIGNATURE] == self.signature_now
                    else f"DIFFERS from the registry's today ({self.signature_now})"),
                 f"  role then: {self.role}"]
        if r.get(CHALLENGER_VERSION):
            lines.append(f"  shadowed by challenger {r[CHALLENGER_VERSION]}: score "
                         f"{r[CHALLENGER_SCORE]:.6f} -> decision {r[CHALLENGER_DECISION]} "
                         "(not served)")
        return lines


def scored_state(store) -> dict:
    """The state of the scored source in ``store``.

    Raises:
        DataError: there is none, or it is unreadable.
    """
    try:
        state = read_json(store, STATE_FILE)
    except (OSError, ValueError) as exc:
        raise DataError(f"{store.where(STATE_FILE)!r} is unreadable ({exc}); restore it") \
            from exc
    if state is None:
        raise DataError(f"{store.where()!r} is not a scored source (no {STATE_FILE}); give the "
                        "--out folder of `rareflow score --data SOURCE`")
    return state


def find_row(store, key: str, state: dict) -> tuple[str, str, dict] | None:
    """(key column, scored partition, row) of ``key``, read partition by partition."""
    for rel in sorted(state[STATE_PARTITIONS]):
        try:
            source = readable(store, scored_relpath(rel))  # read once: its bytes if remote
            column = pq.ParquetFile(source).schema_arrow.names[0]
        except FileNotFoundError:
            continue
        table = pq.read_table(source, filters=ds.field(column).cast(pa.string()) == key)
        if table.num_rows:
            return column, scored_relpath(rel), table.slice(0, 1).to_pylist()[0]
    return None


def role_then(registry: Registry, version: str, when) -> str:
    """Whether ``version`` served as champion at ``when``, from the registry's history."""
    move = registry.served_at(when)
    if move is None:
        return f"not the champion (no version served {registry.name} yet at that time)"
    if move["version"] == version:
        return (f"champion (since {move.get('at')}, {move.get('action', 'promote')} by "
                f"{move.get('actor', '?')}: {move.get('reason', '')})")
    return (f"not the champion: {move['version']} was (the row was scored with an explicit "
            "--version)")


def audit(key: str, scored: str, registry: str) -> Decision:
    """The decision a scored source holds for ``key``.

    Raises:
        DataError: not a scored source, or no row has this key.
    """
    store = open_store(scored)
    state = scored_state(store)
    found = find_row(store, key, state)
    if found is None:
        raise DataError(f"no row with key {key!r} in scored source {str(scored)!r} "
                        f"({len(state[STATE_PARTITIONS])} partitions): check the key (the "
                        "first column of its scored partitions) or the --scored folder")
    column, partition, row = found
    reg = open_registry(registry, state[STATE_MODEL])
    version = row[MODEL_VERSION]
    return Decision(column, key, partition, row, role_then(reg, version, row[SCORED_AT]),
                    signature_digest(reg.version_dir(version)))
