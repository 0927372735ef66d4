"""Scoring a source incrementally (tasks/serving/scored_source.py) and by record batches
(tasks/serving/partition_scoring.py): the scored contract of schemas/scored.py, reruns that
score nothing, re-ingested partitions scored again, bad input refused with nothing written,
and `audit` of a row. A real model in a real signed registry (tests/scoring_model.py)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scoring_model as sm

from schemas.errors import ConfigError, DataError
from schemas.scored import (
    DECISION,
    MODEL_SIGNATURE,
    MODEL_VERSION,
    PARTITION_FIELDS,
    ROW_KEY,
    SCORE,
    SCORED_AT,
    SERVED_COLUMNS,
    STATE_FILE,
    THRESHOLD,
)
from tasks.data.row_keys import key_columns, row_keys
from tasks.data.source_files import resolve_source
from tasks.registry.store import Registry
from tasks.serving import partition_scoring
from tasks.serving.audit import audit
from tasks.serving.batch_scoring import score_frame
from tasks.serving.partition_scoring import Serving
from tasks.serving.scored_source import ScoredSource, default_out, signature_digest
from tasks.serving.source_scoring import score_pending

DAY1, DAY2 = "2026-11-01", "2026-11-02"


@pytest.fixture
def reg(tmp_path):
    sm.publish(tmp_path / "registry")
    return Registry(tmp_path / "registry", sm.NAME)


def serving(reg: Registry, *, version="champion", id_column=None, time_column="event_time"):
    model, meta = reg.load(version)
    return Serving(model, meta["version"], signature_digest(reg.version_dir(meta["version"])),
                   pd.Timestamp.now(tz="UTC"), id_column, time_column)


def score(src: Path, reg: Registry, out: Path | None = None, **options) -> list[dict]:
    """What the scoring flow does for a source, without Prefect."""
    files = resolve_source(str(src))
    scored = ScoredSource.open(files, out or default_out(files), reg.name)
    serve = serving(reg, **options)
    with scored.locked():
        scored.keyed_as(serve)
        return score_pending(scored, scored.pending(), serve)


def scored_files(out: Path) -> dict[str, bytes]:
    """The scored partitions and the state file (not the hidden lock, caches and key files)."""
    found = {p.relative_to(out): p for p in sorted(out.rglob("*")) if p.is_file()}
    return {rel.as_posix(): p.read_bytes() for rel, p in found.items()
            if not any(part.startswith(".") for part in rel.parts)}


def test_rerun_scores_nothing_and_a_reingested_partition_is_scored_again(tmp_path, reg):
    """Check that a second run scores nothing and rewrites no file, and that a partition
    whose file got new content is scored again (and only it), keyed by the input's sha256."""
    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(300), DAY2: sm.rows(200, seed=1)})
    done = score(src, reg)
    assert [d["partition"] for d in done] == [f"date={DAY1}/part.parquet",
                                              f"date={DAY2}/part.parquet"]
    out = tmp_path / "src-scored"
    before = scored_files(out)
    assert score(src, reg) == []
    assert scored_files(out) == before
    state = json.loads((out / STATE_FILE).read_text())
    assert state["model"] == sm.NAME
    for rel, entry in state["partitions"].items():
        assert tuple(sorted(entry)) == tuple(sorted(PARTITION_FIELDS))
        assert entry["sha256"] == hashlib.sha256((src / rel).read_bytes()).hexdigest()
    sm.write_source(src, {DAY2: sm.rows(250, seed=7)})  # re-ingested with new content
    (again,) = score(src, reg)
    assert again["partition"] == f"date={DAY2}/part.parquet" and again["rows"] == 250
    after = scored_files(out)
    assert after[f"date={DAY1}/part.parquet"] == before[f"date={DAY1}/part.parquet"]
    assert len(pq.read_table(out / f"date={DAY2}/part.parquet")) == 250


def test_reruns_hash_no_input_file_again(tmp_path, reg, monkeypatch):
    """Check that once a source is scored, every later run (not only the next one) finds each
    unchanged input's sha256 by its size and mtime, and a touched file is hashed again."""
    from tasks.serving import scored_source

    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(300), DAY2: sm.rows(200, seed=1)})
    score(src, reg)
    hashed = []
    real = scored_source.sha256_file
    monkeypatch.setattr(scored_source, "sha256_file",
                        lambda p: (p.is_relative_to(src) and hashed.append(p)) or real(p))
    for _ in range(3):
        assert score(src, reg) == []
    assert hashed == []
    touched = src / f"date={DAY2}" / "part.parquet"
    touched.touch()
    assert score(src, reg) == [] and hashed == [touched]


def test_keys_checked_all_at_once_refuse_what_one_by_one_refuses(tmp_path, reg):
    """Check that the Dask path's all-at-once key check refuses a partition whose key repeats
    within it, in a new partition before it, or in one scored before the run (removing its
    temporary file), and lets the others through."""
    from tasks.serving.partition_scoring import score_partition

    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(100)})
    score(src, reg, id_column="id")  # ids 0..99 scored before
    twice = sm.rows(20, seed=9, first_id=7000)
    sm.write_source(src, {"2026-11-05": sm.rows(50, seed=5, first_id=1000),
                          "2026-11-06": sm.rows(50, seed=6, first_id=1040),  # 1040..1049 again
                          "2026-11-07": sm.rows(50, seed=7, first_id=90),  # 90..99 again
                          "2026-11-08": sm.rows(50, seed=8, first_id=5000),
                          "2026-11-09": pd.concat([twice, twice.head(3)])})
    source = ScoredSource.open(resolve_source(str(src)), default_out(resolve_source(str(src))),
                               sm.NAME)
    plan = serving(reg, id_column="id")
    items = [(rel, score_partition(path, source.target(rel), plan, where=rel))
             for path, rel, _ in source.pending()]
    errors = source.check_all_repeats(items, "id")
    assert [e is None for e in errors] == [True, False, False, True, False]
    assert "in partitions date=2026-11-05/part.parquet and date=2026-11-06" in str(errors[1])
    assert f"in partitions date={DAY1}/part.parquet and date=2026-11-07" in str(errors[2])
    assert "twice in partition date=2026-11-09" in str(errors[4])
    assert [result.tmp.exists() for _, result in items] == [True, False, False, True, False]


def test_scored_rows_carry_the_contract(tmp_path, reg):
    """Check every scored row: the row key first (a sha256 fingerprint of its inputs, the same
    from CSV as from Parquet), the time column, score, decision at the version's threshold,
    version, threshold, the sha256 of the version's signature.json and scored_at (UTC)."""
    frame = sm.rows(400)
    src = sm.write_source(tmp_path / "src", {DAY1: frame})
    (tmp_path / "csv").mkdir()
    frame.to_csv(tmp_path / "csv" / "day.csv", index=False)
    score(src, reg)
    score(tmp_path / "csv", reg)
    from_parquet = pd.read_parquet(tmp_path / "src-scored" / f"date={DAY1}/part.parquet")
    from_csv = pd.read_parquet(tmp_path / "csv-scored" / "day.parquet")
    assert list(from_parquet.columns) == [ROW_KEY, "event_time", *SERVED_COLUMNS]
    assert from_parquet[ROW_KEY].tolist() == from_csv[ROW_KEY].tolist()
    model, meta = reg.load("champion")
    expected = score_frame(model, frame)
    keys = row_keys(frame, key_columns(model.schema, "event_time"))
    assert from_parquet[ROW_KEY].tolist() == list(keys) and all(len(k) == 32 for k in keys)
    assert np.allclose(from_parquet[SCORE], expected[SCORE])
    assert (from_parquet[DECISION] == (from_parquet[SCORE] >= model.threshold)).all()
    assert (from_parquet[MODEL_VERSION] == meta["version"]).all()
    assert (from_parquet[THRESHOLD] == model.threshold).all()
    signature = hashlib.sha256((reg.version_dir(meta["version"]) / "signature.json")
                               .read_bytes()).hexdigest()
    assert (from_parquet[MODEL_SIGNATURE] == signature).all()
    assert str(from_parquet[SCORED_AT].dt.tz) == "UTC"
    assert (from_parquet["event_time"] == frame["event_time"]).all()


def test_streamed_scores_equal_the_in_memory_path_batch_by_batch(tmp_path, reg, monkeypatch):
    """Check that a partition scored 64 rows at a time (one row group per batch) gives the
    same scores and decisions as today's in-memory path, with the id column as key."""
    monkeypatch.setattr(partition_scoring, "BATCH_ROWS", 64)
    frame = sm.rows(1_000, seed=3)
    src = sm.write_source(tmp_path / "src", {DAY1: frame})
    score(src, reg, id_column="id")
    path = tmp_path / "src-scored" / f"date={DAY1}" / "part.parquet"
    assert pq.ParquetFile(path).metadata.num_row_groups == 16
    scored = pd.read_parquet(path)
    expected = score_frame(reg.load("champion")[0], frame)
    assert scored["id"].tolist() == frame["id"].tolist()
    assert np.allclose(scored[SCORE], expected[SCORE])
    assert (scored[DECISION].to_numpy() == expected[DECISION].to_numpy()).all()


def test_a_bad_row_late_in_a_partition_names_its_row_and_writes_nothing(tmp_path, reg,
                                                                         monkeypatch):
    """Check that a bad value in row 951 of 1,000 (batch 15 of 16) fails with the partition
    and row named, leaves no scored partition and no temporary file, and records nothing."""
    monkeypatch.setattr(partition_scoring, "BATCH_ROWS", 64)
    good, bad = sm.rows(100, seed=2), sm.rows(1_000, seed=4)
    bad["amount"] = bad["amount"].astype(object)
    bad.loc[950, "amount"] = "twelve"
    src = sm.write_source(tmp_path / "src", {DAY1: good})
    (src / f"date={DAY2}").mkdir()
    bad.to_csv(src / f"date={DAY2}" / "part.csv", index=False)
    with pytest.raises(DataError, match=rf"partition date={DAY2}/part.csv of .*, data "
                                        r"row 951: .*'amount'") as caught:
        score(src, reg)
    assert "\n" not in str(caught.value)
    out = tmp_path / "src-scored"
    assert sorted(scored_files(out)) == [STATE_FILE, f"date={DAY1}/part.parquet"]
    assert not list((out / f"date={DAY2}").iterdir())
    assert list(json.loads((out / STATE_FILE).read_text())["partitions"]) == [
        f"date={DAY1}/part.parquet"]


def _missing_column(tmp_path):
    return {DAY1: sm.rows(50).drop(columns=["kind"])}, {}, "no column 'kind'"


def _repeat_within(tmp_path):
    frame = sm.rows(50)
    frame.loc[40, "id"] = 7
    return {DAY1: frame}, {"id_column": "id"}, f"id='7' repeats twice in partition date={DAY1}"


def _repeat_across(tmp_path):
    return ({DAY1: sm.rows(50), DAY2: sm.rows(50, seed=1, first_id=49)}, {"id_column": "id"},
            f"id='49' repeats in partitions date={DAY1}/part.parquet and date={DAY2}")


@pytest.mark.parametrize("case", [_missing_column, _repeat_within, _repeat_across])
def test_bad_partitions_are_refused_in_one_line_with_nothing_written(tmp_path, reg, case):
    """Check that a partition lacking a column of the frozen schema, or with a row key that
    repeats (within it or in another partition), is refused naming the partition, column or
    key, with no scored file or temporary file for it left behind."""
    days, options, message = case(tmp_path)
    src = sm.write_source(tmp_path / "src", days)
    with pytest.raises(DataError, match=message) as caught:
        score(src, reg, **options)
    assert "\n" not in str(caught.value)
    out = tmp_path / "src-scored"
    last = sorted(days)[-1]
    assert not (out / f"date={last}").exists() or not list((out / f"date={last}").iterdir())


def test_another_models_scored_source_and_an_out_inside_the_source_are_refused(tmp_path, reg):
    """Check that scoring into a scored source another model wrote, or into a folder inside
    the input source, is refused before anything is written."""
    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(50)})
    score(src, reg)
    sm.publish(tmp_path / "registry", name="other")
    with pytest.raises(DataError, match="holds the decisions of model 'fraud', not 'other'"):
        score(src, Registry(tmp_path / "registry", "other"))
    with pytest.raises(ConfigError, match="is inside the input source"):
        score(src, reg, out=src / "scored")
    assert not (src / "scored").exists()


def test_audit_names_the_version_threshold_signature_and_role_then(tmp_path, reg):
    """Check that `audit` of a key says which version decided the row, its threshold and
    signature and that it was the champion then; a row scored after a new champion names the
    new one; an unknown key is a one-line DataError."""
    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(50)})
    score(src, reg, id_column="id")
    out = tmp_path / "src-scored"
    first = audit("3", out, str(reg.root))
    assert first.row[MODEL_VERSION] == "v0001" and first.role.startswith("champion")
    text = "\n".join(first.lines())
    assert "decided by v0001" in text and "threshold 0.200000" in text
    assert first.row[MODEL_SIGNATURE] in text and "matches the registry" in text
    sm.publish(tmp_path / "registry", seed=1, threshold=0.3)
    sm.write_source(src, {DAY2: sm.rows(50, seed=1, first_id=100)})
    score(src, reg, id_column="id")
    later = audit("120", out, str(reg.root))
    assert later.row[MODEL_VERSION] == "v0002" and later.row[THRESHOLD] == 0.3
    assert later.role.startswith("champion")
    with pytest.raises(DataError, match="no row with key 'nope'"):
        audit("nope", out, str(reg.root))


def test_a_backfill_reads_each_scored_key_file_once_per_group(tmp_path, reg, monkeypatch):
    """Check that scoring many new partitions reads the key file of each partition scored
    before once per group of new partitions (not once per new partition), and that a key of
    an earlier partition repeated in a later group is still refused."""
    from tasks.serving import scored_source, source_scoring

    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(40), DAY2: sm.rows(40, seed=1,
                                                                               first_id=40)})
    score(src, reg, id_column="id")
    reads = []
    real = scored_source.ScoredSource._sorted_hashes
    monkeypatch.setattr(scored_source.ScoredSource, "_sorted_hashes",
                        lambda self, rel: reads.append(rel) or real(self, rel))
    sm.write_source(src, {f"2026-11-{day:02d}": sm.rows(40, seed=day, first_id=40 * day)
                          for day in range(3, 9)})
    assert len(score(src, reg, id_column="id")) == 6
    assert sorted(reads) == [f"date={DAY1}/part.parquet", f"date={DAY2}/part.parquet"]
    reads.clear()
    monkeypatch.setattr(source_scoring, "KEY_CHECK_ROWS", 80)  # two new partitions a group
    sm.write_source(src, {f"2026-11-{day:02d}": sm.rows(40, seed=day, first_id=40 * day)
                          for day in range(9, 13)})
    sm.write_source(src, {"2026-11-13": sm.rows(40, seed=13, first_id=40 * 9 + 5)})
    with pytest.raises(DataError, match="id='365' repeats in partitions date=2026-11-09"):
        score(src, reg, id_column="id")
    # the groups read the 8 partitions scored before, then 10, then (in scoring order) until
    # the repeat is found: 11-01 .. 11-09; once each per group
    assert len(reads) == 8 + 10 + 9 and max(Counter(reads).values()) == 3
    scored = json.loads((tmp_path / "src-scored" / STATE_FILE).read_text())["partitions"]
    assert len(scored) == 12 and "date=2026-11-13/part.parquet" not in scored


def test_key_index_finds_what_any_added_partition_holds():
    """Check the key index against a plain set, over many small and a few large partitions
    (runs merged, capped), for hits and for misses."""
    from tasks.serving import key_index

    rng = np.random.default_rng(0)
    index, every = key_index.KeyIndex(), set()
    for size in [5, 3, 200, 1, 1, 64, 7, 1000, 2, 30]:
        part = np.sort(rng.integers(0, 2**63, size, dtype=np.uint64))
        index.add(part)
        every.update(part.tolist())
    assert len(index) == len(every) and len(index.runs) <= 6
    asked = np.sort(np.concatenate([rng.choice(np.array(sorted(every), np.uint64), 50),
                                    rng.integers(0, 2**63, 50, dtype=np.uint64)]))
    expected = sorted({int(v) for v in asked} & every)
    assert index.common(asked).tolist() == expected


def test_a_refusal_inside_a_group_keeps_the_others_and_their_key_files(tmp_path, reg,
                                                                        monkeypatch):
    """Check that when a full group holds a partition repeating a key of the one before it,
    the run fails with that DataError, the first partition is in place once with its key file
    intact (a later repeat of its keys is still refused), and no temporary file is left."""
    from tasks.serving import source_scoring

    monkeypatch.setattr(source_scoring, "KEY_CHECK_ROWS", 80)
    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(40), DAY2: sm.rows(40, seed=1,
                                                                               first_id=30)})
    with pytest.raises(DataError, match=f"id='30' repeats in partitions date={DAY1}"):
        score(src, reg, id_column="id")
    out = tmp_path / "src-scored"
    assert not list(out.rglob("*.tmp"))
    keys = np.load(out / ".rareflow_keys" / f"date={DAY1}" / "part.parquet.npy")
    assert len(keys) == 40
    sm.write_source(src, {"2026-11-03": sm.rows(40, seed=3, first_id=10)})
    (src / f"date={DAY2}" / "part.parquet").unlink()
    with pytest.raises(DataError, match=f"id='10' repeats in partitions date={DAY1}"):
        score(src, reg, id_column="id")


def test_a_partition_refused_for_an_old_key_does_not_refuse_the_next(tmp_path, reg):
    """Check that a new partition sharing keys only with another new partition that is itself
    refused (it repeats a key scored before) is accepted, as one partition at a time was; and
    that a scored partition without a key file (an older release's) is scanned instead."""
    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(40)})  # ids 0..39
    score(src, reg, id_column="id")
    (tmp_path / "src-scored" / ".rareflow_keys" / f"date={DAY1}" / "part.parquet.npy").unlink()
    sm.write_source(src, {"2026-11-05": sm.rows(40, seed=5, first_id=30),  # 30..39 again
                          "2026-11-06": sm.rows(40, seed=6, first_id=60)})
    b = sm.rows(40, seed=6, first_id=60)
    b.loc[0, "id"] = 45  # shares id 45 with 2026-11-05 only, which is refused
    sm.write_source(src, {"2026-11-06": b})
    with pytest.raises(DataError, match=f"id='30' repeats in partitions date={DAY1}"):
        score(src, reg, id_column="id")
    state = json.loads((tmp_path / "src-scored" / STATE_FILE).read_text())["partitions"]
    assert sorted(state) == [f"date={DAY1}/part.parquet", "date=2026-11-06/part.parquet"]


def test_a_scored_source_keeps_one_way_of_keying_its_rows(tmp_path, reg):
    """Check that the state records the id and time columns rows were keyed with, and that
    scoring the same scored source keyed another way is refused in one line naming them."""
    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(40)})
    score(src, reg, time_column=None)
    state = json.loads((tmp_path / "src-scored" / STATE_FILE).read_text())
    assert state["key"] == {"id_column": None, "time_column": None}
    sm.write_source(src, {DAY2: sm.rows(40, seed=2, first_id=40)})
    with pytest.raises(DataError, match="keys its rows with --id-column \\(none\\), "
                                        "--time-column \\(none\\): score with the same") as caught:
        score(src, reg, time_column="event_time")
    assert "\n" not in str(caught.value)


def test_a_remote_out_inside_a_remote_source_is_refused(tmp_path):
    """Check that a scored source in object storage inside the input source (a folder, or the
    fixed folder of a glob) is refused before anything is opened, and one beside it is not."""
    from tasks.data.source_files import SourceFiles
    from tasks.serving.scored_source import check_out

    for spec in ("s3://lake/src", "s3://lake/src/**/*.parquet"):
        files = SourceFiles(spec, tmp_path, [], "glob", fetch=lambda path: None)
        with pytest.raises(ConfigError, match="is inside the input source"):
            check_out(files, "s3://lake/src/scored")
        assert check_out(files, "s3://lake/src-scored/") == "s3://lake/src-scored"


def test_a_lost_lease_stops_the_run_before_anything_more_is_placed(tmp_path, reg):
    """Check that when the scored source's lease is lost while partitions are scored, the run
    raises LeaseLost, places none of them (no salvage) and leaves no temporary file."""
    from tasks.serving.scored_lease import LeaseLost

    src = sm.write_source(tmp_path / "src", {DAY1: sm.rows(40), DAY2: sm.rows(40, seed=1,
                                                                               first_id=40)})
    files = resolve_source(str(src))
    scored = ScoredSource.open(files, default_out(files), reg.name)
    calls = []

    def lost():
        calls.append(1)
        if len(calls) == 2:
            raise LeaseLost("another run took over this run's lease")

    with scored.locked():
        scored.check_lease = lost
        with pytest.raises(LeaseLost):
            score_pending(scored, scored.pending(), serving(reg))
    assert not (tmp_path / "src-scored" / STATE_FILE).exists()
    assert not list((tmp_path / "src-scored").rglob("*.tmp"))


def test_monitoring_names_the_time_column_rows_were_fingerprinted_with():
    """Check that a window lacking the time column scoring fingerprinted rows with is refused
    in one line naming the column to pass."""
    from types import SimpleNamespace

    from tasks.monitor.served import source_keys

    window = SimpleNamespace(frame=pd.DataFrame({"amount": [1.0]}), event_time=None)
    with pytest.raises(DataError, match="pass --time-column event_time"):
        source_keys(window, ROW_KEY, None, key_time="event_time", window_time=None, data="d")
