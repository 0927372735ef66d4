"""The 64-bit hashes of many partitions' row keys, asked which of a new partition's keys any
of them holds, without comparing the new partition with each of them in turn.

The hashes are kept as sorted runs merged like a binary counter: a hash is copied O(log n)
times and a lookup searches O(log n) runs. No run grows past ``MAX_RUN`` hashes, so a merge
never holds two large copies at once.
"""

from __future__ import annotations

import numpy as np

MAX_RUN = 1 << 24  # hashes (128 MB) per run at most


def shared_hashes(theirs: np.ndarray, mine: np.ndarray) -> np.ndarray:
    """The values of sorted ``mine`` that sorted ``theirs`` holds (a binary search each: no
    sort of either side)."""
    if not len(theirs) or not len(mine):
        return np.zeros(0, np.uint64)
    at = np.minimum(np.searchsorted(theirs, mine), len(theirs) - 1)
    return mine[theirs[at] == mine]


class KeyIndex:
    """Sorted runs of key hashes; :meth:`add` a partition's, ask :meth:`common`."""

    def __init__(self) -> None:
        self.runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self.runs)

    def add(self, hashes: np.ndarray) -> None:
        """Add a partition's sorted hashes."""
        run = hashes
        while (self.runs and len(self.runs[-1]) <= len(run)
               and len(self.runs[-1]) + len(run) <= MAX_RUN):
            # two sorted runs: the stable sort (timsort) merges them in linear time
            run = np.sort(np.concatenate([self.runs.pop(), run]), kind="stable")
        self.runs.append(run)

    def common(self, mine: np.ndarray) -> np.ndarray:
        """The sorted distinct values of sorted ``mine`` that some added partition holds."""
        found = [hits for run in self.runs if len(hits := shared_hashes(run, mine))]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.uint64)
