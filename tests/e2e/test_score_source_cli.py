"""`rareflow score --data SOURCE --out SCORED` and `rareflow audit` as a user runs them: the
console script in a subprocess, against this package's real Prefect server, on a source that
`rareflow ingest` lands. A rerun scores nothing; a new arrival is scored alone; bad input is
one line, exit 2, nothing written and the champion untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import scoring_model as sm

from schemas.errors import EXIT_BAD_INPUT, EXIT_OK
from schemas.scored import CHALLENGER_VERSION, MODEL_VERSION, SCORED_AT, STATE_FILE

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("rareflow")
    command = [str(script)] if script.is_file() else [
        sys.executable, "-c", "from flows.cli import main; main()"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture
def user(prefect_server, tmp_path):
    """A registry with a champion, and the environment the user's commands run in."""
    sm.publish(tmp_path / "registry")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "DO_NOT_TRACK": "1",
                "PREFECT_API_URL": prefect_server.api_url, "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(ROOT)})
    return tmp_path, env


def ingest(tmp_path: Path, env: dict, frame: pd.DataFrame, name: str) -> None:
    batch = tmp_path / f"{name}.csv"
    frame.to_csv(batch, index=False)
    done = cli("ingest", "--data", str(batch), "--source", str(tmp_path / "source"), "--name",
               sm.NAME, "--time-column", "event_time", env=env, cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr


def test_score_a_source_twice_then_after_a_new_arrival(user):
    """Check that scoring an ingested source writes one scored partition per input partition
    with the champion's version; a second run scores nothing and changes no file; after
    another ingest only the new partition is scored; `audit` names the version of a row."""
    tmp_path, env = user
    ingest(tmp_path, env, pd.concat([sm.rows(300), sm.rows(200, seed=1, day="2026-11-02",
                                                           first_id=300)]), "first")
    args = ["score", "--data", "source", "--out", "scored", "--registry", "registry", "--name",
            sm.NAME, "--id-column", "id", "--time-column", "event_time"]
    first = cli(*args, env=env, cwd=tmp_path)
    assert first.returncode == EXIT_OK, first.stderr
    assert "Scored 2 new partitions (500 rows) with fraud v0001" in first.stdout
    out = tmp_path / "scored"
    before = files(out)
    again = cli(*args, env=env, cwd=tmp_path)
    assert again.returncode == EXIT_OK, again.stderr
    assert "Scored 0 new partitions (0 rows)" in again.stdout and "2 already scored" in again.stdout
    assert {k: v for k, v in files(out).items() if not k.startswith(".")} == {
        k: v for k, v in before.items() if not k.startswith(".")}
    ingest(tmp_path, env, sm.rows(100, seed=2, day="2026-11-03", first_id=1_000), "second")
    third = cli(*args, env=env, cwd=tmp_path)
    assert third.returncode == EXIT_OK, third.stderr
    assert "Scored 1 new partitions (100 rows)" in third.stdout and "date=2026-11-03" in \
        third.stdout
    scored = pd.read_parquet(next(out.glob("date=2026-11-03/*.parquet")))
    assert sorted(scored["id"]) == list(range(1_000, 1_100))
    assert set(scored[MODEL_VERSION]) == {"v0001"}
    audit = cli("audit", "1042", "--scored", "scored", "--registry", "registry", env=env,
                cwd=tmp_path)
    assert audit.returncode == EXIT_OK, audit.stderr
    assert "id=1042" in audit.stdout and "decided by v0001" in audit.stdout
    assert "role then: champion" in audit.stdout


def test_bad_scoring_input_is_one_line_exit_2_and_writes_nothing(user):
    """Check that --out inside the source, another model's scored source, `audit` of an
    unknown key and a file to score without --out each end with one `error:` line, exit 2,
    no traceback, nothing written, and the registry unchanged."""
    tmp_path, env = user
    ingest(tmp_path, env, sm.rows(100), "batch")
    sm.publish(tmp_path / "registry", name="other")
    ok = cli("score", "--data", "source", "--out", "scored", "--registry", "registry",
             "--name", sm.NAME, env=env, cwd=tmp_path)
    assert ok.returncode == EXIT_OK, ok.stderr
    registry, scored = files(tmp_path / "registry"), files(tmp_path / "scored")
    cases = [
        (["score", "--data", "source", "--out", "source/scored", "--registry", "registry",
          "--name", sm.NAME], "is inside the input source"),
        (["score", "--data", "source", "--out", "scored", "--registry", "registry",
          "--name", "other"], "holds the decisions of model 'fraud', not 'other'"),
        (["audit", "no-such-key", "--scored", "scored", "--registry", "registry"],
         "no row with key 'no-such-key'"),
        (["score", "--data", "batch.csv", "--registry", "registry", "--name", sm.NAME],
         "--out is required to score the file 'batch.csv'"),
    ]
    for args, message in cases:
        done = cli(*args, env=env, cwd=tmp_path)
        assert done.returncode == EXIT_BAD_INPUT, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("error: ") and message in lines[-1], lines[-1]
    assert not (tmp_path / "source" / "scored").exists()
    assert files(tmp_path / "registry") == registry
    assert files(tmp_path / "scored") == scored
    assert (tmp_path / "scored" / STATE_FILE).is_file()


def scored_tables(out: Path) -> dict[str, pd.DataFrame]:
    """Each scored partition of ``out`` without the run's own time (``scored_at``)."""
    return {p.relative_to(out).as_posix(): pd.read_parquet(p).drop(columns=SCORED_AT)
            for p in sorted(out.rglob("*.parquet"))}


def recorded(out: Path) -> dict:
    """The scored source's state: each partition's input sha256, version and rows."""
    parts = json.loads((out / STATE_FILE).read_text())["partitions"]
    return {p: {k: v for k, v in e.items() if k != "scored_at"} for p, e in parts.items()}


def test_dask_scoring_writes_what_the_local_path_writes(user):
    """Check that `score --executor dask` (a local cluster of 2 worker processes, each loading
    and verifying the champion and the shadow challenger itself) writes the same scored
    partitions and state as the local path; a rerun scores nothing; a bad new partition fails
    the run with one line naming it and its row, while the good one beside it is scored; a
    partition only touched is hashed by its worker and not scored again."""
    tmp_path, env = user
    sm.publish(tmp_path / "registry", seed=1, promote=False)
    done = cli("models", "challenge", "v0002", "--registry", "registry", "--name", sm.NAME,
               env=env, cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    days = {f"2026-11-0{d}": sm.rows(150, seed=d, day=f"2026-11-0{d}", first_id=1000 * d)
            for d in (1, 2, 3)}
    sm.write_source(tmp_path / "source", days)
    base = ["score", "--data", "source", "--registry", "registry", "--name", sm.NAME,
            "--id-column", "id", "--time-column", "event_time"]
    local = cli(*base, "--out", "local", env=env, cwd=tmp_path)
    assert local.returncode == EXIT_OK, local.stderr
    spread = [*base, "--out", "spread", "--executor", "dask", "--dask-workers", "2"]
    first = cli(*spread, env=env, cwd=tmp_path)
    assert first.returncode == EXIT_OK, first.stderr
    assert "Scored 3 new partitions (450 rows) with fraud v0001" in first.stdout
    mine, theirs = scored_tables(tmp_path / "spread"), scored_tables(tmp_path / "local")
    assert list(mine) == list(theirs) and len(mine) == 3
    for name, frame in mine.items():
        pd.testing.assert_frame_equal(frame, theirs[name], check_exact=True)
        assert set(frame[CHALLENGER_VERSION]) == {"v0002"}
    assert recorded(tmp_path / "spread") == recorded(tmp_path / "local")
    again = cli(*spread, env=env, cwd=tmp_path)
    assert again.returncode == EXIT_OK and "Scored 0 new partitions" in again.stdout, again.stderr
    before = files(tmp_path / "spread")
    os.utime(next((tmp_path / "source").glob("date=2026-11-02/*")))  # touched, same content
    touched = cli(*spread, env=env, cwd=tmp_path)  # its worker hashes it: nothing to score
    assert touched.returncode == EXIT_OK, touched.stderr
    assert "Scored 0 new partitions" in touched.stdout and "3 already scored" in touched.stdout
    changed = {k for k, v in files(tmp_path / "spread").items() if before.get(k) != v}
    assert changed == {".rareflow_digests.json"}
    bad = sm.rows(50, seed=4, day="2026-11-04", first_id=4000).astype({"amount": object})
    bad.loc[7, "amount"] = "twelve"
    (tmp_path / "source" / "date=2026-11-04").mkdir()
    bad.to_csv(tmp_path / "source" / "date=2026-11-04" / "part.csv", index=False)
    sm.write_source(tmp_path / "source", {"2026-11-05": sm.rows(60, seed=5, day="2026-11-05",
                                                                first_id=5000)})
    failed = cli(*spread, env=env, cwd=tmp_path)
    assert failed.returncode == EXIT_BAD_INPUT, (failed.stdout, failed.stderr)
    last = [line for line in failed.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: partition date=2026-11-04/part.csv") and "row 8:" in last
    assert "Traceback" not in failed.stdout + failed.stderr
    assert not list((tmp_path / "spread").glob("date=2026-11-04/*"))
    from .conftest import free_port

    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    unreachable = cli(*base, "--out", "elsewhere", "--dask-address", address, env=env,
                      cwd=tmp_path)  # an address alone means the Dask executor
    assert unreachable.returncode == EXIT_BAD_INPUT, unreachable.stderr
    assert unreachable.stderr.strip().splitlines()[-1].startswith(
        f"error: cannot reach the Dask scheduler at {address} (dask_address)")
    assert not list((tmp_path / "elsewhere").glob("date=*"))
    assert len(pd.read_parquet(next((tmp_path / "spread").glob("date=2026-11-05/*.parquet")))) == 60
