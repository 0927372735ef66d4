"""Judge what was served: a scored source (``rareflow score --out SCORED``) joined with the
source's matured labels by row key, each version judged on the rows it decided (its own
``decision`` and ``score``, never a re-score), so a champion change inside the window is
reported per version, never mixed.

The recall test and the figures are the plain monitoring's (:func:`tasks.monitor.verdict.judge`
against each version's own reference); label maturity is :mod:`tasks.data.labels`'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.config import MonitoringConfig
from schemas.errors import DataError
from schemas.inference import InputSchema
from schemas.scored import (
    KEY_TIME_COLUMN,
    MODEL_VERSION,
    ROW_KEY,
    SCORED_AT,
    SCORED_COLUMNS,
    STATE_FILE,
    STATE_KEY,
)
from tasks.data.labels import LabelRoles
from tasks.data.row_keys import key_columns, row_keys, unique_keys
from tasks.data.scan import iso
from tasks.data.window import SourceWindow
from tasks.decision.costs import DecisionCosts
from tasks.monitor.verdict import Judgement, estimate_pending, judge
from tasks.runtime.io_retries import IO_RETRIES
from tasks.runtime.object_store import open_store, read_json, readable

logger = logging.getLogger(__name__)

SCORED_BATCH_ROWS = 1 << 20  # scored rows filtered by key a batch at a time
KEY_TIME = "key_time_column"  # read_scored's frame: the time column its row keys include


def scored_files(store) -> list[str]:
    """The scored partitions of a scored source's store: Parquet objects, none hidden or
    temporary (keys in path order)."""
    return [k for k in store.list() if k.endswith(".parquet")
            and not any(part.startswith((".", "_")) for part in k.split("/"))]


def read_scored(path: str, *, name: str, window: SourceWindow | None = None,
                schema: InputSchema | None = None, time_column: str | None = None,
                data: str | None = None) -> pd.DataFrame:
    """The scored rows of a scored source (a folder or an object-storage URL) written for
    model ``name``, partition by partition in path order: every one, or with ``window`` (of
    source ``data``, and the ``schema`` its row keys are computed with) only those whose
    source row is in it, read a record batch at a time, so memory follows the window, not the
    scored source.

    Raises:
        DataError: not a scored source, written for another model name, or empty.
    """
    store = open_store(path)
    try:
        state = read_json(store, STATE_FILE)
        written_for = None if state is None else state["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{store.where(STATE_FILE)} is unreadable ({exc}): score the source "
                        "again into a new --out folder") from exc
    if state is None:
        raise DataError(f"--scored {path!r} is not a scored source (no {STATE_FILE}): "
                        "pass the --out folder of `rareflow score --data SOURCE --out SCORED`")
    if written_for != name:
        raise DataError(f"scored source {path!r} was written by model {written_for!r}, not "
                        f"{name!r}: pass --name {written_for} or the scored source of {name}")
    files = scored_files(store)
    if not files:
        raise DataError(f"scored source {path!r} holds no scored partition yet: score the "
                        "source first (`rareflow score --data SOURCE --out SCORED`)")
    # the time column scoring fingerprinted rows with (recorded since 2026-12-05), else ours
    key_time = (state.get(STATE_KEY) or {KEY_TIME_COLUMN: time_column})[KEY_TIME_COLUMN]
    sources = (readable(store, f) for f in files)
    first = next(sources)
    wanted = None
    if window is not None:
        key = key_column(pq.ParquetFile(first).schema_arrow.names, time_column=key_time)
        keys = source_keys(window, key, schema, key_time=key_time, window_time=time_column,
                           data=data or path)
        wanted = pa.array(keys).cast(pa.string())  # both sides in Arrow's text form
    parts = [_rows_in(source, wanted) for source in (first, *sources)]
    scored = pd.concat(parts, ignore_index=True)
    scored.attrs[KEY_TIME] = key_time
    logger.info("Read %d scored rows of %s from %d partitions%s", len(scored), name,
                len(files), "" if wanted is None else " (those in the window)")
    return scored


def _rows_in(source, wanted: pa.Array | None) -> pd.DataFrame:
    """A scored partition's rows (those whose key, its first column, is in ``wanted``)."""
    parquet = pq.ParquetFile(source)
    if wanted is None:
        return parquet.read().to_pandas()
    kept = [batch.filter(pc.is_in(batch.column(0).cast(pa.string()), value_set=wanted))
            for batch in parquet.iter_batches(batch_size=SCORED_BATCH_ROWS)]
    return pa.Table.from_batches(kept, schema=parquet.schema_arrow).to_pandas()


def source_keys(window: SourceWindow, key: str, schema: InputSchema, *,
                key_time: str | None, window_time: str | None, data: str) -> np.ndarray:
    """The row key of each of the window's rows: its ``key`` column, or the content
    fingerprint scoring gave it (``row_key``, over the inputs and time column ``key_time``;
    the window's parsed time when that is its time column ``window_time``).

    Raises:
        DataError: the source lacks the key column, or the window the time column.
    """
    frame = window.frame
    if key == ROW_KEY:
        keyed = frame
        if key_time and key_time not in frame.columns:
            if key_time != window_time:
                raise DataError(f"the scored rows were fingerprinted with time column "
                                f"{key_time!r}, which the window of {data!r} does not hold: "
                                f"pass --time-column {key_time} (as `rareflow score` had)")
            keyed = frame.assign(**{key_time: pd.Series(window.event_time).to_numpy()})
        return row_keys(keyed, key_columns(schema, key_time))
    if key not in frame.columns:
        raise DataError(f"the scored rows are keyed by {key!r}, which source {data!r} does "
                        "not hold: pass the source that was scored")
    return frame[key].to_numpy()


def key_column(columns, *, time_column: str | None) -> str:
    """The scored rows' key: ``row_key`` (a content fingerprint), else the one column that is
    neither a scored column nor the time column (the source's ``id_column``).

    Raises:
        DataError: none or several candidates.
    """
    if ROW_KEY in columns:
        return ROW_KEY
    others = [c for c in columns if c not in SCORED_COLUMNS and c != time_column]
    if len(others) != 1:
        raise DataError(f"the scored rows carry no single row key (columns {others}): score "
                        "the source again with this release (`rareflow score`)")
    return others[0]


@dataclass
class Served:
    """The scored rows whose source row is in the window, with its label columns."""

    frame: pd.DataFrame  # the source row's columns, then the scored columns
    matured: np.ndarray | None
    maturity_time: pd.Series | None
    event_time: pd.Series | None
    key: str


def join_served(scored: pd.DataFrame, window: SourceWindow, *, schema: InputSchema,
                config: MonitoringConfig) -> Served:
    """The scored rows joined with the window's rows by row key (scored rows whose source row
    is outside the window are left out).

    Raises:
        DataError: a key repeats on either side, or the source lacks the key column.
    """
    key_time = scored.attrs.get(KEY_TIME, config.time_column)
    key = key_column(scored.columns, time_column=key_time)
    frame = window.frame
    index = unique_keys(source_keys(window, key, schema, key_time=key_time,
                                    window_time=config.time_column, data=config.data),
                        key=key, where=f"source {config.data!r}")
    unique_keys(scored[key], key=key, where=f"scored source {config.scored!r}")
    pos = index.get_indexer(scored[key])
    found = pos >= 0
    pos = pos[found]
    rows = scored.loc[found, [c for c in scored.columns if c in SCORED_COLUMNS]]
    joined = frame.iloc[pos].drop(columns=[c for c in SCORED_COLUMNS if c in frame.columns])
    joined = pd.concat([joined.reset_index(drop=True), rows.reset_index(drop=True)], axis=1)
    logger.info("%d of %d scored rows found in the window of %s", int(found.sum()),
                len(scored), config.data)

    def take(series):
        return None if series is None else series.iloc[pos].reset_index(drop=True)

    matured = None if window.matured is None else np.asarray(window.matured)[pos]
    return Served(joined, matured, take(window.maturity_time), take(window.event_time), key)


def versions_in_order(served: Served) -> list[str]:
    """The versions that decided rows, in the order they first scored one."""
    frame = served.frame
    if frame.empty:
        raise DataError(f"no scored row of {served.key!r} is in the window of the source: "
                        "pass the source that was scored, or widen --window / --as-of")
    order = frame.sort_values(SCORED_AT, kind="mergesort") if SCORED_AT in frame else frame
    return list(dict.fromkeys(order[MODEL_VERSION].astype(str)))


@dataclass
class VersionInfo:
    """What judging one version needs from the registry."""

    schema: InputSchema
    threshold: float
    costs: DecisionCosts
    reference: pd.DataFrame
    trained_as_of: pd.Timestamp | None = None  # its training window's end (None: unknown)


def time_range(served: Served, rows: np.ndarray) -> tuple[str | None, str | None]:
    """The event times (else scoring times) of the selected rows: first and last."""
    times = served.event_time
    if times is None and SCORED_AT in served.frame:
        times = pd.to_datetime(served.frame[SCORED_AT], utc=True)
    if times is None or not rows.any():
        return None, None
    picked = times[rows]
    return iso(picked.min()), iso(picked.max())


def matured_after(served: Served, when: pd.Timestamp | None) -> np.ndarray:
    """Which rows' labels matured after ``when`` (every row when either is unknown): rows a
    version trained as of ``when`` cannot have trained on."""
    if when is None or served.maturity_time is None:
        return np.ones(len(served.frame), dtype=bool)
    return np.asarray(pd.DatetimeIndex(pd.to_datetime(served.maturity_time, utc=True)) > when)


def after_training(served: Served, roles: LabelRoles,
                   infos: dict[str, VersionInfo]) -> LabelRoles:
    """The roles with each row judged only when its label matured after the deciding
    version's training window ended, as the re-scoring path judges (``since_last_check``):
    a partition scored after the fact (a first scoring run over an older source) holds rows
    the version may have trained on, and those say nothing of how it serves."""
    if served.maturity_time is None:
        return roles
    versions = served.frame[MODEL_VERSION].astype(str).to_numpy()
    known = np.ones(len(versions), dtype=bool)
    for version, info in infos.items():
        mine = versions == version
        known[mine] = matured_after(served, info.trained_as_of)[mine]
    left_out = int((roles.judged & ~known).sum())
    if left_out:
        logger.info("%d matured rows left out: their labels matured before the version that "
                    "decided them was trained", left_out)
    return replace(roles, judged=roles.judged & known,
                   checked_before=roles.checked_before + left_out)


def judge_versions(served: Served, roles: LabelRoles, infos: dict[str, VersionInfo], *,
                   config: MonitoringConfig) -> dict[str, Judgement]:
    """Each version judged on the matured rows it decided, against its own reference."""
    versions = served.frame[MODEL_VERSION].astype(str).to_numpy()
    out = {}
    for version, info in infos.items():
        mine = versions == version
        batch = served.frame.loc[mine].reset_index(drop=True)
        logger.info("Judging %s on the %d rows it decided", version, int(mine.sum()))
        out[version] = judge(batch, roles.y[mine], roles.judged[mine], info.reference,
                             threshold=info.threshold, schema=info.schema, costs=info.costs,
                             config=config)
    return out


def served_estimate(served: Served, roles: LabelRoles, version: str, info: VersionInfo, *,
                    j: Judgement, config: MonitoringConfig):
    """The early warning on what was served: recall and cost estimated from the scores
    ``version`` gave the rows whose labels have not matured (as the re-scoring path's)."""
    mine = served.frame[MODEL_VERSION].astype(str).to_numpy() == version
    return estimate_pending(served.frame.loc[mine].reset_index(drop=True), roles.pending[mine],
                            info.reference, j=j, costs=info.costs, config=config)


def decided_by(served: Served, version: str) -> pd.DataFrame:
    """The window's rows ``version`` decided, labels matured or not: what its inputs are
    compared with the reference on (input drift needs no label, and on a scored source
    that started serving lately no label has matured yet)."""
    return served.frame.loc[served.frame[MODEL_VERSION].astype(str).to_numpy() == version]


def judged_from(served: Served, roles: LabelRoles, version: str) -> str | None:
    """When the matured rows ``version`` decided begin (their first event time; None without
    a time column): the ``since`` of a retraining the drift event starts, as the re-scoring
    path's ``judged_from``."""
    if served.event_time is None:
        return None
    mine = served.frame[MODEL_VERSION].astype(str).to_numpy() == version
    return time_range(served, roles.judged & mine)[0]


def served_summary(served: Served, roles: LabelRoles,
                   judgements: dict[str, Judgement]) -> dict:
    """Which rows and versions were judged: counts, time ranges, each version's verdict."""
    versions = served.frame[MODEL_VERSION].astype(str).to_numpy()
    per_version = []
    for version, j in judgements.items():
        judged = roles.judged & (versions == version)
        first, last = time_range(served, judged)
        per_version.append({
            "version": version, "rows": int((versions == version).sum()),
            "matured_rows": int(judged.sum()), "from": first, "to": last,
            "status": j.decision.status, "decision": j.decision.as_dict(),
            "batch": j.figures["batch"], "reference": j.figures["reference"],
            "cost": j.cost["batch"]})
    first, last = time_range(served, roles.judged)
    return {"rows": int(len(served.frame)), "matured_rows": int(roles.judged.sum()),
            "from": first, "to": last, "key": served.key, "versions": per_version}


def served_text(summary: dict) -> str:
    """One sentence per judged version, for the verdict line."""
    parts = [f"{v['version']}: {v['status']} on {v['matured_rows']} matured rows it decided "
             f"({v['from']} to {v['to']})" for v in summary["versions"]]
    return "judged per version what was served: " + "; ".join(parts)


read_scored_task = task(read_scored, name="read-scored", cache_policy=NO_CACHE, **IO_RETRIES)
join_served_task = task(join_served, name="join-served", cache_policy=NO_CACHE)
judge_versions_task = task(judge_versions, name="judge-versions", cache_policy=NO_CACHE)
served_estimate_task = task(served_estimate, name="estimate-recall", cache_policy=NO_CACHE)


def judged_payload(summary: dict) -> dict:
    """The rows and versions judged, compact, for the event payload and the state."""
    keep = ("version", "rows", "matured_rows", "from", "to", "status")
    return {**{k: summary[k] for k in ("rows", "matured_rows", "from", "to")},
            "versions": [{k: v[k] for k in keep} for v in summary["versions"]]}


def with_served(result: dict, summary: dict, shadow: dict | None) -> dict:
    """A monitoring result (of the version judged in full) with what was served: the rows
    and versions judged, each version's verdict, the challenger's; a new dict."""
    out = {**result, "served": summary, "judged": judged_payload(summary), "shadow": shadow}
    out["verdict"] = f"{result['verdict']}; {served_text(summary)}" + (
        f"; challenger {shadow['verdict']['challenger']}: {shadow['verdict']['reason']}"
        + (f" -> {shadow['action']} ({shadow['status']})" if shadow["action"] else "")
        if shadow else "")
    return out
