"""Concurrent writers and killed writers against one registry on object storage (S3 on moto's
server, Azure Blob Storage on Azurite, both on loopback), as separate processes: no lock
anywhere, only the service's conditional writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tasks.registry.open_registry import open_registry
from tasks.registry.signed_records import MAC, PREV

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

MODEL = textwrap.dedent('''
    from sklearn.linear_model import LogisticRegression
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
''')

WRITERS = MODEL + textwrap.dedent('''
    import json, multiprocessing as mp, os, sys
    root, writers, rounds, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = mp.get_context("fork")  # no storage client exists before the fork
    barrier = ctx.Barrier(writers)

    def write(writer):
        from tasks.registry.open_registry import open_registry
        from tasks.registry.store import Registry
        reg = open_registry(root, "shared")
        done = []
        for turn in range(rounds):
            barrier.wait()
            seen = (reg.champion() or {}).get("version")
            barrier.wait()  # every writer compared with the same champion
            published = reg.publish(model, {"verdict": {"status": "passed"}, "writer": writer,
                                            "round": turn}, compared_with=seen,
                                    promote_reason=f"writer {writer} round {turn}")
            done.append({"round": turn, "seen": seen, "version": published.version,
                         "status": published.status})
        with open(f"{out}.{writer}", "w") as fh:
            json.dump(done, fh)

    procs = [ctx.Process(target=write, args=(w,)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    hung = [p for p in procs if p.exitcode is None]  # a writer stuck at the barrier
    for p in hung:
        p.kill()
        p.join(30)
    sys.exit(0 if not hung and all(p.exitcode == 0 for p in procs) else 1)
''')

SLOW = MODEL + textwrap.dedent('''
    import sys, time
    from tasks.registry.open_registry import open_registry
    from tasks.registry.store import Registry
    from tasks.registry.object_champion import ObjectChampionLog
    root, where = sys.argv[1], sys.argv[2]
    reg = open_registry(root, "m")
    Store = type(reg.store)  # S3's or Azure's
    if where == "upload":  # stop after the model is uploaded, before the manifest
        real = Store.write
        def write(self, key, data):
            real(self, key, data)
            if key.endswith("model.joblib"):
                print("UPLOADING", key.split("/")[-2], flush=True)
                time.sleep(120)
        Store.write = write
        reg.register(model, {"verdict": {"status": "passed"}})
    else:  # stop after the pointer moved, before its history record
        version = reg.register(model, {"verdict": {"status": "passed"}})
        def append(self, entry):
            print("MOVED", version, flush=True)
            time.sleep(120)
        ObjectChampionLog.append_history = append
        reg.promote(version, reason="killed before history")
''')


def run_script(script: str, *args, env: dict, timeout: float = 300) -> None:
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]


def kill_when(script: str, *args, marker: str, env: dict) -> str:
    """Start a writer, SIGKILL it (by its pid) once it prints ``marker``; its line."""
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith(marker):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return line.split()[1]
            if not line and proc.poll() is not None:
                break
        raise AssertionError(f"the writer never reached {marker}: {proc.stderr.read()[-3000:]}")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_three_concurrent_trainings_one_move_per_decision(cloud, tmp_path):
    """Check that three writers publishing at once, each compared with the same champion,
    end every round with exactly one champion move and the others stale; history is one
    unbroken sealed chain and every version verifies."""
    root, writers, rounds = cloud.new_root(), 3, 3
    run_script(WRITERS, root, writers, rounds, tmp_path / "out",
               env={**os.environ, **cloud.env()})
    results = [r for w in range(writers)
               for r in json.loads((tmp_path / f"out.{w}").read_text())]
    reg = open_registry(root, "shared")
    moves = [h for h in reg.history() if h["action"] == "promote"]
    assert len(moves) == rounds
    for turn in range(rounds):
        statuses = sorted(r["status"] for r in results if r["round"] == turn)
        assert statuses == ["passed"] + ["stale"] * (writers - 1), (turn, results)
    assert [m["previous"] for m in moves] == [None] + [m["version"] for m in moves[:-1]]
    assert reg.champion()["version"] == moves[-1]["version"]
    history = reg.history()
    assert all(h[PREV] == (history[i - 1][MAC] if i else None) for i, h in enumerate(history))
    assert len(reg.version_ids()) == writers * rounds
    assert all(reg.verify(v)["version"] == v for v in reg.version_ids())
    status = reg.summaries().set_index("version")["status"]
    assert sorted(status.value_counts().items()) == [("passed", rounds),
                                                     ("stale", rounds * (writers - 1))]


def test_sigkill_during_upload_lists_no_half_version(cloud):
    """Check that a writer killed while uploading a version leaves it unlisted, the champion
    untouched, and the next registration takes the next id and verifies."""
    root, env = cloud.new_root(), {**os.environ, **cloud.env()}
    reg = open_registry(root, "m")
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    v1 = reg.register(model, {"verdict": {"status": "passed"}})
    reg.promote(v1, reason="first")
    half = kill_when(SLOW, root, "upload", marker="UPLOADING", env=env)
    assert half == "v0002"
    assert reg.store.exists(f"m/versions/{half}/model.joblib")  # it was mid-upload
    assert open_registry(root, "m").version_ids() == [v1]
    assert open_registry(root, "m").champion()["version"] == v1
    v3 = reg.register(model, {"verdict": {"status": "passed"}})
    assert v3 == "v0003" and reg.verify(v3)["version"] == v3
    assert open_registry(root, "m").version_ids() == [v1, v3]


def test_sigkill_between_pointer_and_history_is_repaired(cloud):
    """Check that a writer killed after moving the pointer but before writing its history
    record leaves a valid champion, and the next writer appends the missing record first."""
    root, env = cloud.new_root(), {**os.environ, **cloud.env()}
    moved = kill_when(SLOW, root, "history", marker="MOVED", env=env)
    reg = open_registry(root, "m")
    assert reg.champion()["version"] == moved
    assert [h["action"] for h in reg.history()] == []
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    v2 = reg.register(model, {"verdict": {"status": "passed"}})
    reg.promote(v2, reason="next")
    moves = [(h["version"], h["previous"]) for h in open_registry(root, "m").history()]
    assert moves == [(moved, None), (v2, moved)]
