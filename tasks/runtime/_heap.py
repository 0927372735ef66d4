"""A shortcut through the C library: give the freed heap back to the operating system.

* :func:`trim_heap`: glibc's ``malloc_trim``, so each fold (and each table read) does not start
  with the last one's freed heap.

Each shortcut here names the versions it was checked against (``CHECKED_AGAINST``);
``tests/unit/test_library_internals.py`` holds its upgrade test.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

CHECKED_AGAINST: dict[str, str] = {}  # glibc's malloc_trim: a stable C interface


def trim_heap() -> None:
    """Return glibc's free heap to the operating system (a few milliseconds).

    Why: arrays below glibc's mmap threshold (which grows up to 32 MB as big arrays are
    freed) come from the heap, and a freed heap is kept, so without this the fitting of each
    fold started 70-100 MB higher than the one before (measured at 1M rows).

    Relies on: ``malloc_trim`` in ``libc.so.6`` (glibc on Linux); elsewhere it does nothing.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (e.g. musl)
            ctypes.CDLL("libc.so.6").malloc_trim(0)
