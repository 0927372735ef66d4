"""Several writers against one registry at once, as separate processes.

Every version must be intact, the history must hold every promotion exactly once in an
unbroken chain (each entry's ``previous`` is the entry before it), and champion.json must be
valid and match the last promotion.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.registry.store import MODEL_FILE, REFERENCE_FILE, Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NAME = "shared"

WRITERS = textwrap.dedent('''
    import json, os, sys, time
    from pathlib import Path
    from tasks.data.demo_tables import make_demo_data
    from tasks.search.candidates import spec_from_config
    from tasks.search.final_fit import fit_final
    from tasks.registry.store import Registry
    from tasks.data.validation import validate_training_data

    root, writers, cycles, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    df = make_demo_data(600, positive_rate=0.05, seed=0)
    data = validate_training_data(df, label="is_fraud", positive="1", test_size=0.2,
                                  n_folds=3)
    model = fit_final(spec_from_config("logreg", "none", "none"), data.X, data.y,
                      data.schema, threshold=0.3, seed=0).model
    reference = data.X.head(50).assign(is_fraud="0")
    start = time.time() + 0.5
    pids = []
    for writer in range(writers):  # separate processes, imported once, then forked
        pid = os.fork()
        if pid:
            pids.append(pid)
            continue
        try:
            reg = Registry(root, "shared")
            time.sleep(max(0.0, start - time.time()))  # all start writing at once
            done = []
            for cycle in range(cycles):
                meta = {"verdict": {"status": "passed"}, "writer": writer, "cycle": cycle,
                        "pid": os.getpid()}
                version = reg.register(model, meta, reference=reference, card="# {version}")
                entry = reg.promote(version, reason=f"writer {writer} cycle {cycle}")
                done.append({"version": version, "event_id": entry["event_id"]})
            Path(out, f"writer-{writer}.json").write_text(json.dumps(done))
            os._exit(0)
        except BaseException:
            __import__("traceback").print_exc()
            os._exit(1)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    sys.exit(max(codes))
''')


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def check_history_chain(reg: Registry) -> list[dict]:
    """Every promotion once, each one's ``previous`` the one before; the champion the last.
    (History also records candidates not promoted: the chain is over the moves.)"""
    history = reg.log.moves()
    ids = [h["event_id"] for h in history]
    assert len(ids) == len(set(ids)), "a promotion is recorded twice"
    previous = None
    for entry in history:
        assert entry["previous"] == previous, f"history chain broken at {entry}"
        previous = entry["version"]
    champion = reg.champion()
    assert champion["event_id"] == history[-1]["event_id"]
    assert champion["version"] == history[-1]["version"]
    return history


def check_versions_intact(reg: Registry) -> None:
    for version in reg.version_ids():
        meta = reg.metadata(version)
        folder = reg.version_dir(version)
        assert hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest() == meta["sha256"]
        assert hashlib.sha256((folder / REFERENCE_FILE).read_bytes()).hexdigest() == (
            meta["files"][REFERENCE_FILE])
        assert meta["version"] == version
    assert not list(reg.versions_dir.glob(".tmp-*"))
    assert not list(reg.dir.glob(".champion.json.*"))


def test_parallel_writers_register_and_promote(tmp_path):
    """Check that 4 processes x 6 register+promote cycles leave a consistent registry."""
    writers, cycles = 4, 6
    root, out = tmp_path / "registry", tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", WRITERS, str(root), str(writers), str(cycles), str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    done = {w: json.loads((out / f"writer-{w}.json").read_text()) for w in range(writers)}

    reg = Registry(root, NAME)
    registered = [d["version"] for runs in done.values() for d in runs]
    assert len(registered) == len(set(registered)) == writers * cycles
    assert sorted(registered) == reg.version_ids()
    for w, runs in done.items():  # each version holds what its writer registered
        for cycle, d in enumerate(runs):
            meta = reg.metadata(d["version"])
            assert (meta["writer"], meta["cycle"]) == (w, cycle)
    assert len({reg.metadata(v)["pid"] for v in registered}) == writers
    check_versions_intact(reg)
    history = check_history_chain(reg)
    assert sorted(h["event_id"] for h in history) == sorted(
        d["event_id"] for runs in done.values() for d in runs)
    model, _ = reg.load("champion")
    assert hasattr(model, "decide")
    interleaved = len({h["reason"].split()[1] for h in history[:cycles]}) > 1
    print(f"\nconcurrent writers: {writers} x {cycles} cycles; "
          f"{len(history)} promotions recorded once each; interleaved: {interleaved}")


def test_parallel_cli_training_runs(prefect_server, tmp_path):
    """Check that 3 `rareflow train` runs at once give 3 intact versions and a valid history."""
    from tasks.data.demo_tables import make_demo_data

    runs = 3
    root = tmp_path / "registry"
    script = Path(sys.executable).with_name("rareflow")
    command = [str(script)] if script.is_file() else [
        sys.executable, "-c", "from flows.cli import main; main()"]
    env = {**prefect_server.env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = []
    for i in range(runs):
        data = tmp_path / f"train{i}.csv"
        make_demo_data(1500, positive_rate=0.05, seed=20 + i).to_csv(data, index=False)
        procs.append(subprocess.Popen(
            [*command, "train", "--data", str(data), "--label", "is_fraud", "--positive", "1",
             "--model", "logreg", "--sampler", "none", "--class-weight", "none",
             "--folds", "3", "--registry", str(root), "--name", NAME],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outcomes = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode in (0, 3), stderr[-3000:]
        match = re.search(rf"{NAME} (v\d+): (promoted|NOT promoted)", stdout)
        assert match, stdout
        outcomes.append((match.group(1), proc.returncode))

    reg = Registry(root, NAME)
    assert sorted(v for v, _ in outcomes) == reg.version_ids() == ["v0001", "v0002", "v0003"]
    check_versions_intact(reg)
    for version in reg.version_ids():
        reg.load(version)
    history = check_history_chain(reg)
    promoted = sorted(v for v, code in outcomes if code == 0)
    assert sorted(h["version"] for h in history) == promoted
    print(f"\nconcurrent CLI training runs: {runs}; promoted {promoted}; "
          f"champion {reg.champion()['version']}")
