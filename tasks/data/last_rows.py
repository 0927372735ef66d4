"""A window of the last N rows (``window: 50000rows``), with or without a negative sample.

Without a sample the last N rows are picked once the window is read
(:func:`tasks.data.window.assemble`). With one they must be picked before any negative is
dropped, or the window would count sampled rows: a first pass reads only the time and
label-maturity columns of the partitions the window may use, keeping of each partition only
its own last N candidate rows (in the window, label matured; a row among the last N of all is
among the last N of its partition), and :func:`last_of` marks which of them are among the
last N of all. The sampled pass then keeps a row only when it is marked (:class:`LastRows`)
and the sample keeps it: the sample is drawn from exactly the rows a window of rows without a
sample would use. The first pass holds at most N rows' times, plus one partition's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from schemas.errors import DataError


def last_positions(times: pd.Series | None, n_rows: int, keep: int) -> np.ndarray | None:
    """Positions (sorted) of the last ``keep`` of ``n_rows`` rows by event time, ties by
    position (a stable sort); in order when there are no times; None: every row."""
    if keep >= n_rows:
        return None
    if times is None:
        return np.arange(n_rows - keep, n_rows)
    order = np.argsort(times.to_numpy(), kind="stable")
    return np.sort(order[-keep:])


@dataclass
class Tail:
    """A partition's last candidate rows: their positions among its candidates, their times
    (None: the source has none) and how many candidates it has."""

    rel: str
    positions: np.ndarray
    times: pd.Series | None
    count: int

    @classmethod
    def none(cls, rel: str) -> Tail:
        """A partition without a candidate row."""
        return cls(rel, np.zeros(0, dtype=np.int64), None, 0)

    @classmethod
    def of(cls, rel: str, times: pd.Series | None, count: int, keep: int) -> Tail:
        pick = last_positions(times, count, keep)
        if pick is None:
            return cls(rel, np.arange(count), times, count)
        return cls(rel, pick, None if times is None else times.iloc[pick], count)


def last_of(tails: list[Tail], keep: int) -> dict[str, Tail]:
    """Of the partitions' tails, in path order, those rows among the last ``keep`` of all
    (ties by path, then position): each partition's marked positions."""
    if not tails:
        return {}
    times = (None if tails[0].times is None
             else pd.concat([t.times for t in tails], ignore_index=True))
    pick = last_positions(times, sum(len(t.positions) for t in tails), keep)
    chosen = np.ones(sum(len(t.positions) for t in tails), dtype=bool)
    if pick is not None:
        chosen[:] = False
        chosen[pick] = True
    bounds = np.cumsum([0, *[len(t.positions) for t in tails]])
    return {t.rel: Tail(t.rel, t.positions[chosen[bounds[i]:bounds[i + 1]]], None, t.count)
            for i, t in enumerate(tails)}


class LastRows:
    """Narrows the rows a scan keeps to those :func:`last_of` marked, batch after batch."""

    def __init__(self, marks: dict[str, Tail]):
        self.marks, self.seen = marks, {}

    def narrow(self, rel: str, keep: np.ndarray) -> np.ndarray:
        """``keep`` (a batch's candidate rows of partition ``rel``) without the unmarked."""
        picked = np.flatnonzero(keep)
        start = self.seen.get(rel, 0)
        self.seen[rel] = start + len(picked)
        tail = self.marks.get(rel) or Tail.none(rel)
        if start + len(picked) > tail.count:
            raise _changed(rel)
        lo, hi = np.searchsorted(tail.positions, [start, start + len(picked)])
        out = np.zeros(len(keep), dtype=bool)
        out[picked[tail.positions[lo:hi] - start]] = True
        return out

    def finish(self, rel: str) -> None:
        """Check that partition ``rel`` held as many candidate rows as in the first pass."""
        if self.seen.get(rel, 0) != (self.marks[rel].count if rel in self.marks else 0):
            raise _changed(rel)


def _changed(rel: str) -> DataError:
    return DataError(f"partition {rel!r} changed while the window was read (its rows in the "
                     "window differ between two reads): train again")
