"""Crash safety of the registry: SIGKILL at many points of registration and promotion.

A worker process imports the registry once and forks a writer for every kill point; the
writer registers and promotes (and now and then rolls back) a small fitted model and is
killed with SIGKILL, either at a named point (the writer patches the file operations it calls
to kill itself there: no hook in production code) or after a time-staggered delay. After each
kill the registry must load, the champion must be the old or a newer complete version, every
listed version must pass its sha256, and once the next writer takes the lock the history must
record every promotion exactly once, with the champion's as the last entry.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tasks.registry.store import MODEL_FILE, REFERENCE_FILE, Registry

NAME = "crashy"
REPO = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent(r'''
    import io, os, signal, sys, time
    import numpy as np, pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    import tasks.registry.versions as registry_module  # writes the version files (joblib.dump)
    from tasks.registry.champion import ChampionLog
    from tasks.registry.store import Registry

    root, name = sys.argv[1], sys.argv[2]
    X, y = make_classification(n_samples=300, n_features=6, weights=[0.9], random_state=0)
    MODEL = LogisticRegression(max_iter=500).fit(X, y)
    REFERENCE = pd.DataFrame(X[:60], columns=[f"f{i}" for i in range(6)]).assign(label=y[:60])
    META = {"verdict": {"status": "passed"}, "threshold": 0.5}


    def die():
        os.kill(os.getpid(), signal.SIGKILL)


    def cycle(reg, i):
        version = reg.register(MODEL, {**META, "cycle": i}, reference=REFERENCE,
                               card="# model {version}\n")
        reg.promote(version, reason=f"cycle {i}")
        if i % 3 == 2:
            reg.rollback(reason=f"cycle {i}")


    def arm(point):
        """Patch the file operations the registry calls so the writer dies at ``point``."""
        real_rename, real_replace = os.rename, os.replace
        real_dump = registry_module.joblib.dump
        real_append = ChampionLog.append_history
        champion = lambda dst: str(dst).endswith("champion.json")
        if point == "register:before-model-write":
            registry_module.joblib.dump = lambda *a, **k: die()
        elif point == "register:mid-model-write":
            def dump(model, fh, **kw):
                buf = io.BytesIO()
                real_dump(model, buf, **kw)
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2]); fh.flush(); die()
            registry_module.joblib.dump = dump
        elif point == "register:before-rename":
            os.rename = lambda src, dst: die()
        elif point == "register:after-rename":
            os.rename = lambda src, dst: (real_rename(src, dst), die())
        elif point in ("promote:before-replace", "rollback:before-replace"):
            os.replace = lambda src, dst: die() if champion(dst) else real_replace(src, dst)
        elif point in ("promote:after-replace", "rollback:after-replace"):
            os.replace = lambda src, dst: (real_replace(src, dst),
                                           die() if champion(dst) else None)
        elif point == "promote:mid-history-append":
            def torn(self, entry):
                line = __import__("json").dumps(entry).encode()
                with open(self.history_path, "ab") as fh:
                    fh.write(line[: len(line) // 2]); fh.flush()
                die()
            ChampionLog.append_history = torn
        elif point == "promote:after-history-append":
            ChampionLog.append_history = lambda self, e: (real_append(self, e), die())
        else:
            raise SystemExit(f"unknown point {point}")


    def child(mode, arg, seed, progress):
        reg = Registry(root, name)
        if mode == "point":
            if arg.startswith("rollback:"):
                cycle(reg, 0)  # a promotion to roll back from
                arm(arg)
                reg.rollback(reason="crash test")
            else:
                arm(arg)
                cycle(reg, 0)
            os._exit(3)  # the point was never reached
        i = seed
        while True:
            cycle(reg, i)
            os.write(progress, b".")  # one more cycle done
            i += 1


    print("ready", flush=True)
    for line in sys.stdin:
        mode, arg, seed = line.split()
        sys.stdout.flush()
        progress_r, progress_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(progress_r)
            try:
                child(mode, arg, int(seed), progress_w)
            except BaseException:
                __import__("traceback").print_exc()
            finally:
                os._exit(4)
        os.close(progress_w)
        extra = ""
        if mode in ("sleep", "calibrate"):  # a writer looping register/promote/rollback
            os.read(progress_r, 1)  # its first (slower, cold) cycle is done
            if mode == "calibrate":  # time the next cycles
                started, n = time.perf_counter(), int(arg)
                for _ in range(n):
                    os.read(progress_r, 1)
                extra = f" {(time.perf_counter() - started) / n:.6f}"
            else:  # kill it arg seconds into its next cycles
                time.sleep(float(arg))
            os.kill(pid, signal.SIGKILL)
        os.close(progress_r)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        print(("killed" if killed else f"exited {os.WEXITSTATUS(status)}") + extra, flush=True)
''')

NAMED_POINTS = [
    "register:before-model-write",
    "register:mid-model-write",
    "register:before-rename",
    "register:after-rename",
    "promote:before-replace",
    "promote:after-replace",
    "promote:mid-history-append",
    "promote:after-history-append",
    "rollback:before-replace",
    "rollback:after-replace",
]


class Worker:
    """The forking writer process, driven one kill at a time over stdin/stdout."""

    def __init__(self, root: Path):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), NAME], cwd=REPO, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, mode: str, arg: str | float, seed: int = 0) -> str:
        self.proc.stdin.write(f"{mode} {arg} {seed}\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture
def worker(tmp_path):
    w = Worker(tmp_path / "registry")
    yield w
    w.close()


def observe(reg: Registry) -> dict:
    """What a kill left behind, seen before anyone repairs the registry."""
    torn = False
    if reg.history_path.is_file():
        data = reg.history_path.read_bytes()
        torn = bool(data) and not data.endswith(b"\n")
    champion = reg.champion() or {}
    return {
        "staging_left": any(reg.versions_dir.glob(".tmp-*")),
        "champion_tmp_left": any(reg.dir.glob(".champion.json.*")),
        "history_behind": bool(champion.get("event_id"))
        and champion["event_id"] not in {h.get("event_id") for h in reg.history()},
        "torn_history_line": torn,
        "champion_not_newest": bool(champion) and champion["version"] != reg.version_ids()[-1],
    }


def check_registry(reg: Registry, allowed: set | None = None) -> str | None:
    """Assert every crash-safety invariant; return the champion version.

    Args:
        allowed: The champion versions possible after this kill (the old or the new one);
            None accepts any complete version.
    """
    ids = reg.version_ids()
    for version in ids:  # every listed version is complete and intact
        meta = reg.metadata(version)
        folder = reg.version_dir(version)
        digest = hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()
        assert digest == meta["sha256"], version
        assert meta["files"][REFERENCE_FILE] == hashlib.sha256(
            (folder / REFERENCE_FILE).read_bytes()).hexdigest()
    champion = reg.champion()  # parses: never a partial champion.json
    current = champion["version"] if champion else None
    assert allowed is None or current in allowed, f"champion {current}, expected {allowed}"
    if champion is None:
        return None
    assert current in ids
    model, meta = reg.load("champion")
    assert meta["version"] == current and hasattr(model, "predict_proba")
    with reg.lock():  # what the next writer does first: finish an interrupted promotion
        pass
    history = reg.history()
    events = Counter(h["event_id"] for h in history)
    assert all(n == 1 for n in events.values()), "a promotion is recorded twice"
    assert history[-1]["event_id"] == champion["event_id"]
    assert history[-1]["version"] == current
    assert reg.champion_stack()[-1] == current
    assert not list(reg.versions_dir.glob(".tmp-*")), "a dead writer's staging folder stayed"
    assert not list(reg.dir.glob(".champion.json.*")), "a dead writer's temp pointer stayed"
    assert reg.history_path.read_bytes().endswith(b"\n")
    return current


@pytest.mark.slow
def test_named_kill_points_leave_registry_consistent(worker, tmp_path):
    """Check that SIGKILL at every named write step leaves an old or new, intact champion."""
    reg = Registry(tmp_path / "registry", NAME)
    effects = Counter()
    champion = None
    for round_ in range(2):  # first with no champion yet, then with one
        for point in NAMED_POINTS:
            before = champion
            assert worker.run("point", point, round_) == "killed", point
            for key, value in observe(reg).items():
                effects[key] += value
            newest = reg.version_ids()[-1] if reg.version_ids() else None
            committed = point.startswith("promote:") and "before" not in point
            if point == "rollback:before-replace":
                allowed = {newest}  # the child promoted newest, then died rolling back
            else:
                allowed = {newest} if committed else {before}
            champion = check_registry(reg, allowed)
    assert effects["staging_left"] and effects["history_behind"]
    assert effects["torn_history_line"] and effects["champion_tmp_left"]
    print(f"\nnamed kill points survived: {2 * len(NAMED_POINTS)}; effects {dict(effects)}")


@pytest.mark.slow
def test_time_staggered_kills_leave_registry_consistent(worker, tmp_path):
    """Check that SIGKILL of a register/promote/rollback loop at many offsets is survivable."""
    reg = Registry(tmp_path / "registry", NAME)
    answer, per_cycle = worker.run("calibrate", 10).split()  # how long one cycle takes here
    assert answer == "killed"
    per_cycle = float(per_cycle)
    rng = random.Random(7)
    check_registry(reg)
    effects = Counter()
    kills = 60
    for i in range(kills):
        offset = (i / kills) * 3 * per_cycle + rng.uniform(0, per_cycle / 4)
        assert worker.run("sleep", f"{offset:.4f}", seed=100 * (i + 1)) == "killed"
        for key, value in observe(reg).items():
            effects[key] += value
        check_registry(reg)
    final = reg.register(object(), {"verdict": {"status": "passed"}})
    reg.promote(final, reason="after the crashes")
    assert reg.champion()["version"] == final == reg.version_ids()[-1]
    print(f"\ntime-staggered kills survived: {kills} (cycle {per_cycle * 1000:.0f} ms, "
          f"{len(reg.version_ids())} versions, {len(reg.history())} history entries); "
          f"effects {dict(effects)}")
