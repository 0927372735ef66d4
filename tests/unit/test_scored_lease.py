"""One run at a time on a scored source in object storage: the lease of
tasks/serving/scored_lease.py (created only if absent, renewed and taken over by
compare-and-swap), exercised on the local store, which implements the same operations; the same
lease against a real S3 protocol is in tests/e2e/test_s3_cli.py."""

from __future__ import annotations

import json
import time

import pytest

from tasks.runtime.object_store import LocalStore
from tasks.serving import scored_lease
from tasks.serving.scored_lease import LOCK_FILE, Lease, LeaseLost


def test_one_run_holds_the_lease_until_it_releases_it(tmp_path):
    """Check that a second run cannot take a live lease, and takes it once it is released."""
    store = LocalStore(tmp_path)
    first, second = Lease(store), Lease(store)
    assert first._try() and not second._try()
    first.renew(every=0)  # still held: renewing works
    first.release()
    assert store.read(LOCK_FILE) is None
    assert second._try()
    assert json.loads(store.read(LOCK_FILE))["holder"] == second.holder


def test_a_dead_runs_lease_expires_and_its_holder_cannot_write_after(tmp_path, monkeypatch):
    """Check that an expired lease is taken over by exactly one of two waiting runs, and that
    the run that lost it fails on its next renewal (before recording anything) and leaves the
    new holder's lease in place when it releases."""
    store = LocalStore(tmp_path)
    dead = Lease(store, seconds=0.05)
    assert dead._try()
    time.sleep(0.1)
    waiting = [Lease(store), Lease(store)]
    assert [lease._try() for lease in waiting] == [True, False]
    with pytest.raises(LeaseLost, match="another run took over this run's lease"):
        dead.renew(every=0)
    dead.release()
    assert json.loads(store.read(LOCK_FILE))["holder"] == waiting[0].holder


def test_acquire_waits_for_the_holder(tmp_path, monkeypatch):
    """Check that acquire polls until the holder releases (here: after two polls)."""
    store = LocalStore(tmp_path)
    holder = Lease(store)
    assert holder._try()
    polls = []

    def sleep(_):
        polls.append(1)
        if len(polls) == 2:
            holder.release()

    monkeypatch.setattr(scored_lease.time, "sleep", sleep)
    assert Lease(store).acquire().tag is not None and len(polls) == 2


def test_a_kept_lease_is_renewed_in_the_background_and_a_takeover_is_seen(tmp_path):
    """Check that a lease kept by its heartbeat outlives its own expiry while the run works,
    that another run cannot take it meanwhile, and that a takeover (forced here) makes the
    holder's next check raise before it writes."""
    store = LocalStore(tmp_path)
    lease = Lease(store, seconds=1.0).acquire().keep()  # a second of slack on a busy machine
    time.sleep(2.0)  # twice its expiry: renewed every 0.1 s
    assert not Lease(store)._try()
    lease.check()
    store.write(LOCK_FILE, json.dumps({"holder": "other", "expires": time.time() + 60}).encode())
    time.sleep(0.5)  # five renewals
    with pytest.raises(LeaseLost):
        lease.check()
    lease.release()
    assert json.loads(store.read(LOCK_FILE))["holder"] == "other"  # not ours to delete
