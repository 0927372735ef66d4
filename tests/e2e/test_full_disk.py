"""A full disk is a one-line storage error (exit 6) that leaves nothing half-written.

The registry and outputs live on a small tmpfs that the test mounts (root only; skipped where
mounting is not allowed), filled up after a first model is trained and promoted. Then
`rareflow score --out` and `rareflow monitor` each hit ENOSPC, and `rareflow train` is stopped by
its preflight's free-space check.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import VENV_BIN

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "ab" * 32
TRAIN = ["--label", "is_fraud", "--positive", "1", "--model", "logreg", "--sampler", "none",
         "--class-weight", "none", "--folds", "3"]


@pytest.fixture()
def tiny_disk(tmp_path):
    """A 160 MiB tmpfs mounted for this test, unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _run(args, env, cwd):
    return subprocess.run([str(VENV_BIN / "rareflow"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)


def _fill(disk, *, leave: int) -> None:
    """Fill the disk up to ``leave`` free bytes."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    with open(disk / "filler.bin", "wb") as fh:
        fh.write(b"\0" * max(free - leave, 0))


def test_a_full_disk_is_a_one_line_storage_error(prefect_server, tiny_disk, tmp_path):
    """Check that score --out, monitor and train on a full disk each exit 6 with one line
    naming the file and what to do, no traceback, no partial output, no new version or
    report folder, and the champion untouched."""
    from tasks.data.demo_tables import make_demo_data

    env = {**prefect_server.env, "RAREFLOW_SIGNING_KEY": KEY}
    data = tmp_path / "train.csv"
    make_demo_data(3000, positive_rate=0.05).to_csv(data, index=False)
    batch = tmp_path / "batch.csv"
    make_demo_data(40000, positive_rate=0.05, seed=3).to_csv(batch, index=False)
    registry = tiny_disk / "registry"
    common = ["--registry", str(registry), "--name", "m"]
    first = _run(["train", "--data", str(data), *TRAIN, *common], env, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    versions = registry / "m" / "versions"
    before = {p.name: sorted(q.name for q in p.rglob("*")) for p in versions.iterdir()}
    champion = (registry / "m" / "champion.json").read_bytes()
    _fill(tiny_disk, leave=64 * 1024)
    out = tiny_disk / "scored.parquet"
    calls = {"score": ["score", "--data", str(batch), "--out", str(out), *common],
             "monitor": ["monitor", "--data", str(batch), *common],
             "train": ["train", "--data", str(data), *TRAIN, *common]}
    for what, args in calls.items():
        done = _run(args, env, tmp_path)
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        assert done.returncode == 6, f"{what}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        if what == "train":  # the preflight sees the full disk before any work
            assert "free space or pass --registry elsewhere" in last, last
        else:
            assert last.startswith("error: storage error writing") and "no space left" in last
            assert "free space" in last, last
        assert "Traceback" not in done.stderr, what
    assert not out.exists() and not list(tiny_disk.glob(".scored*"))
    after = {p.name: sorted(q.name for q in p.rglob("*")) for p in versions.iterdir()}
    assert after == before  # no new version, no report folder, no staging leftovers
    assert (registry / "m" / "champion.json").read_bytes() == champion
