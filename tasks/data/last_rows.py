"""A window of the last N rows (``window: 50000rows``), with or without a negative sample.

Without a sample the last N rows are picked once the window is read
(:func:`tasks.data.window.assemble`). With one they must be picked before any negative is
dropped, or the window would count sampled rows: a first pass reads only the time and
label-maturity columns of the partitions the window may use, and :func:`last_of` marks which of
each partition's candidate rows (in the window, label matured) are among the last N. The
sampled pass then keeps a row only when it is marked (:class:`LastRows`) and the sample keeps
it: the sample is drawn from exactly the rows a window of rows without a sample would use.
"""

from __future__ import annotations

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


def last_of(parts: list[tuple[str, pd.Series | None, int]], keep: int) -> dict[str, np.ndarray]:
    """For each partition (its name, its candidate rows' times, their number), in path
    order, which of its candidate rows are among the last ``keep`` of all of them."""
    counts = [n for _, _, n in parts]
    times = ([t for _, t, _ in parts] if parts and parts[0][1] is not None else None)
    times = None if times is None else pd.concat(times, ignore_index=True)
    pick = last_positions(times, sum(counts), keep)
    chosen = np.ones(sum(counts), dtype=bool)
    if pick is not None:
        chosen[:] = False
        chosen[pick] = True
    bounds = np.cumsum([0, *counts])
    return {rel: chosen[bounds[i]:bounds[i + 1]] for i, (rel, _, _) in enumerate(parts)}


class LastRows:
    """Narrows the rows a scan keeps to those :func:`last_of` marked, batch after batch."""

    def __init__(self, marks: dict[str, np.ndarray]):
        self.marks, self.seen = marks, {}

    def narrow(self, rel: str, keep: np.ndarray) -> np.ndarray:
        """``keep`` (a batch's candidate rows of partition ``rel``) without the unmarked."""
        picked = np.flatnonzero(keep)
        start = self.seen.get(rel, 0)
        self.seen[rel] = start + len(picked)
        marks = self.marks.get(rel, np.zeros(0, dtype=bool))[start:start + len(picked)]
        if len(marks) != len(picked):
            raise DataError(f"partition {rel!r} changed while the window was read (its rows in "
                            "the window differ between two reads): train again")
        out = np.zeros(len(keep), dtype=bool)
        out[picked[marks]] = True
        return out
