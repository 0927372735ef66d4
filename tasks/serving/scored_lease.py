"""One run at a time writes a scored source: a file lock on local disk, a lease in object
storage.

A scored source (a local folder, or ``s3://...``) is its state file, its scored partitions, the
key files and the digests cache, all objects of one store (:mod:`tasks.runtime.object_store`).
One run at a time writes it:

* on local disk, a file lock (released by the OS when the process dies);
* in object storage, a **lease**: an object created only if absent (``If-None-Match: *``)
  holding its holder's id and an expiry, renewed while the run works, by compare-and-swap on its
  tag (``If-Match``). A run finding a live lease waits; an expired one (its holder died) is
  taken over by compare-and-swap, so two waiting runs cannot both take it. A run whose lease
  was taken over stops before writing its state (:class:`LeaseLost`).

A scored partition appears whole (a rename on disk, one PUT in object storage), and the state
file is written after it, so a reader never sees half a partition.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid

from schemas.errors import DataError
from tasks.runtime.object_store import LocalStore
from tasks.runtime.object_store_api import ObjectStore

logger = logging.getLogger(__name__)

LOCK_FILE = ".rareflow_scored.lock"
LEASE_SECONDS = 600.0  # a lease not renewed for this long belongs to a dead run
LEASE_POLL_SECONDS = 2.0


class LeaseLost(DataError):
    """Another run took this run's lease over (it was not renewed in time)."""


class Lease:
    """This run's hold on a scored source in object storage."""

    def __init__(self, store: ObjectStore, *, seconds: float = LEASE_SECONDS):
        self.store, self.seconds = store, seconds
        self.holder, self.tag, self.renewed = uuid.uuid4().hex, None, 0.0
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"holder": self.holder,
                           "expires": time.time() + self.seconds}).encode()

    def _try(self) -> bool:
        if self.store.put_if_absent(LOCK_FILE, body := self._body()):
            return self._held(body)
        found = self.store.read_tagged(LOCK_FILE)
        if found is None:
            return False  # released meanwhile: try again
        with contextlib.suppress(ValueError, KeyError, TypeError):
            if json.loads(found[0])["expires"] > time.time():
                return False
        return self.store.replace_if(LOCK_FILE, body := self._body(), found[1]) and \
            self._held(body)

    def _held(self, body: bytes) -> bool:
        found = self.store.read_tagged(LOCK_FILE)
        if found is None or found[0] != body:
            return False
        self.tag, self.renewed = found[1], time.monotonic()
        return True

    def acquire(self) -> Lease:
        """Wait until this run holds the lease (a dead run's expires)."""
        while not self._try():
            time.sleep(LEASE_POLL_SECONDS)
        return self

    def renew(self, *, every: float | None = None) -> None:
        """Push the expiry on (at most every ``every`` seconds; default a tenth of the lease).

        Raises:
            LeaseLost: another run took the lease over.
        """
        if time.monotonic() - self.renewed < (self.seconds / 10 if every is None else every):
            return
        if not self.store.replace_if(LOCK_FILE, body := self._body(), self.tag) \
                or not self._held(body):
            raise LeaseLost(f"scored source {self.store.where()!r}: another run took over this "
                            f"run's lease (not renewed within {self.seconds:.0f} s); nothing "
                            "more was recorded: run the scoring again")

    def keep(self) -> Lease:
        """Renew the lease from a background thread every tenth of its time, however long
        the run's steps take (waiting on Dask, checking keys); a loss is kept for
        :meth:`check`."""
        def beat():
            while not self._stop.wait(self.seconds / 10):
                try:
                    self.renew(every=0)
                except LeaseLost as exc:
                    self.lost = exc
                    return
                except Exception as exc:  # noqa: BLE001 - storage unreachable: next beat
                    logger.warning("renewing the lease on %s failed (%s); trying again",
                                   self.store.where(), type(exc).__name__)

        self._beat = threading.Thread(target=beat, name="rareflow-lease", daemon=True)
        self._beat.start()
        return self

    def check(self) -> None:
        """Before a write: this run still holds the lease.

        Raises:
            LeaseLost: another run took it over.
        """
        if self.lost is not None:
            raise self.lost

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        found = self.store.read_tagged(LOCK_FILE)
        if found is not None and found[1] == self.tag:
            self.store.delete(LOCK_FILE)  # (a takeover in between: ours expired anyway)


@contextlib.contextmanager
def held(store: ObjectStore):
    """One run at a time on the scored source in ``store``; yields a ``check()`` callable
    to call before each write (raises :class:`LeaseLost` once another run holds it)."""
    if isinstance(store, LocalStore):
        from filelock import FileLock

        store.root.mkdir(parents=True, exist_ok=True)
        with FileLock(store.root / LOCK_FILE):
            yield lambda: None
        return
    lease = Lease(store).acquire().keep()
    try:
        yield lease.check
    finally:
        lease.release()
