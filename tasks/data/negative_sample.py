"""Training on sources larger than memory: every positive and a share of the negatives.

While the source is read (:class:`tasks.data.scan.SourceReader`, a Parquet partition one
record batch at a time, a CSV partition whole) a :class:`NegativeSampler` keeps every row of the
positive class and a negative row when a hash of its content and the run's seed falls below the
rate, so the same ``as_of`` over the same files rebuilds the same rows, whatever the
partitioning. Only the kept rows stay in memory: the window's peak is its kept rows plus one
record batch (or CSV partition).

A kept negative stands for ``1 / rate`` negatives of the population. The run judges in the
population's units (:meth:`tasks.decision.costs.DecisionCosts.for_training`: a false alarm on a
kept negative counts ``1 / rate`` times in costs, precision, PR AUC and the gates) and the served
model's scores are corrected back to the population's prevalence
(:func:`tasks.decision.calibration.population_scores`).

``sample: auto`` chooses the rate ``sample_rows / rows``, with the rows of the partitions the
window may use counted first (Parquet footers; CSV line counts): about ``sample_rows`` rows are
kept, plus the positives (all kept; a rare class adds few).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import ConfigError, DataError
from tasks.data.source_files import SourceFiles
from tasks.data.split import content_hashes
from tasks.data.tables import PARQUET_SUFFIXES
from tasks.data.validation import label_text

KNOWN_PAIRS = (("1", "0"), ("True", "False"), ("yes", "no"), ("Yes", "No"))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def uniform_from(hashes: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per 64-bit hash, mixed with ``seed`` (splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        z = hashes.astype(np.uint64) ^ (np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * _GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def memory_bytes(path: Path, files: SourceFiles | None = None) -> int:
    """About what a partition's rows take in memory: a Parquet file's uncompressed row groups,
    a CSV's size on disk (text is about as large as the columns it parses to). ``files``: the
    source's, which reads a remote Parquet file's footer alone (other files are fetched)."""
    try:
        if path.name.lower().endswith(PARQUET_SUFFIXES):
            meta = files.footer(path) if files else pq.read_metadata(path)
            return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        path = files.local(path) if files else path
        return path.stat().st_size * (4 if path.name.lower().endswith(".gz") else 1)
    except (pa.ArrowException, OSError):
        return 0  # reading it reports the problem


def auto_rate(rows: int, budget: int) -> float:
    """The share of negatives that keeps about ``budget`` of ``rows`` rows (1: keep all)."""
    return 1.0 if rows <= budget else budget / rows


def count_rows(path: Path, files: SourceFiles | None = None) -> int:
    """Rows of a partition without reading them: the Parquet footer (``files``: as
    :func:`memory_bytes`), or a CSV's lines."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    lines = 0
    try:
        if path.name.lower().endswith(PARQUET_SUFFIXES):
            return (files.footer(path) if files else pq.read_metadata(path)).num_rows
        path = files.local(path) if files else path
        with opener(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                lines += chunk.count(b"\n")
    except (pa.ArrowException, OSError, EOFError):
        return 0  # reading it reports the problem
    return max(lines - 1, 0)  # the header


def available_memory() -> int | None:
    """Bytes this process can still take: MemAvailable, within a cgroup's limit (a container's
    or a Kubernetes pod's); None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as fh:
            found += [int(line.split()[1]) * 1024 for line in fh
                      if line.startswith("MemAvailable:")]
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_window_fits(needed: int, *, source: str, training: bool = True,
                      available: int | None = None) -> None:
    """Refuse to read a window whose rows alone (``needed`` bytes uncompressed, read once as
    Arrow and once as pandas) would not fit in the memory left, before reading any of it.

    Raises:
        DataError: naming the source, both sizes and what to set (for training, ``sample``).
    """
    available = available_memory() if available is None else available
    if available is None or 2 * needed <= available:
        return
    what = ("set sample (e.g. --sample auto, which keeps every positive and a share of the "
            "negatives), narrow --window" if training else "narrow --window")
    raise DataError(
        f"the window of source {source!r} holds about {needed / 2**30:.1f} GiB of rows "
        f"uncompressed, and reading it needs about twice that; this machine has "
        f"{available / 2**30:.1f} GiB available: {what}, or use a machine with more memory")


class NegativeSampler:
    """Which rows of each partition a sampled training window keeps, and what it kept.

    Args:
        setting: The config's ``sample`` (a rate in (0, 1] or ``auto``).
        label: The label column; ``positive`` its rare class's value (as text; None: 1, True
            or yes when the label holds such a pair).
        seed: The run's seed (another seed keeps other negatives).
        budget: ``sample_rows`` (``auto``).
    """

    def __init__(self, setting, *, label: str, positive: str | None, seed: int, budget: int):
        self.setting, self.label, self.positive = setting, label, positive
        self.seed, self.budget = seed, budget
        self.rate = None if setting == "auto" else float(setting)
        self.before = {"positive": 0, "negative": 0}
        self.after = {"positive": 0, "negative": 0}

    def resolve(self, rows: int) -> None:
        """``auto``: the rate for a window of at most ``rows`` rows."""
        if self.rate is None:
            self.rate = auto_rate(rows, self.budget)

    def _positive_of(self, values: pd.Series, where: str) -> str:
        if self.positive is not None:
            return self.positive
        present = set(values.unique())
        for pos, neg in KNOWN_PAIRS:
            if present <= {pos, neg}:
                self.positive = pos
                return pos
        raise ConfigError(f"sample: label {self.label!r} holds {sorted(present)[:5]} in {where}, "
                          "not 1/0, True/False or yes/no, so which class to keep whole is not "
                          "known before the source is read: set --positive")

    def keep(self, rows, candidates: np.ndarray, *, where: str) -> np.ndarray:
        """``candidates`` (the rows the window keeps) narrowed to every positive and the
        negatives whose hash falls below the rate (a rate of 1 keeps every row, as without a
        sample)."""
        picked = np.flatnonzero(candidates)
        if self.rate >= 1.0 or not len(picked):
            return candidates
        frame = rows.take(picked).to_pandas() if isinstance(rows, pa.Table) else rows.iloc[picked]
        if self.label not in frame.columns:
            raise DataError(f"{where} has no label column {self.label!r}: sample needs every "
                            "row's label to keep the positives; fix --label or the partition")
        labels = frame[self.label]
        if labels.isna().any():
            raise DataError(f"{where}: label {self.label!r} is empty on "
                            f"{int(labels.isna().sum())} rows of the window; sample needs "
                            "their labels (fill or drop them)")
        text = label_text(labels.reset_index(drop=True))
        positive = (text == self._positive_of(text, where)).to_numpy()
        u = uniform_from(content_hashes(frame, np.zeros(len(frame), np.int8),
                                        list(frame.columns)), self.seed)
        kept_here = positive | (u < self.rate)
        for name, mask in (("positive", positive), ("negative", ~positive)):
            self.before[name] += int(mask.sum())
            self.after[name] += int((kept_here & mask).sum())
        kept = np.zeros(len(candidates), dtype=bool)
        kept[picked[kept_here]] = True
        return kept

    def lineage(self) -> dict:
        """What the version records: the setting, rate, seed and rows per class."""
        every = self.rate >= 1.0  # auto on a window within the budget: every row kept
        return {"setting": self.setting, "rate": self.rate, "seed": self.seed,
                "positive": self.positive, "negative_weight": 1.0 / self.rate,
                "key": "64-bit hash of each row's content, mixed with the seed",
                "rows_before": None if every else dict(self.before),
                "rows_after": None if every else dict(self.after)}


def check_sampled_negatives(sample: dict | None, *, source: str, needed: int) -> None:
    """Refuse a sample that keeps fewer negatives than the split and folds need.

    Raises:
        DataError: naming the ``sample`` setting and what to do.
    """
    after = (sample or {}).get("rows_after")
    if not after:
        return
    needed = max(needed, after["positive"])  # fewer negatives than positives: too few
    if after["negative"] >= needed:
        return
    enough = min(1.0, needed * 10 / max(sample["rows_before"]["negative"], 1))
    what = ("raise sample_rows" if sample["setting"] == "auto"
            else f"raise sample (for example to {enough:.3g})")
    raise DataError(
        f"sample {sample['setting']} (rate {sample['rate']:.3g}) keeps "
        f"{sample['rows_after']['negative']} of the {sample['rows_before']['negative']} "
        f"negative rows of source {source!r}; it must keep at least {needed} (as many as the "
        f"positives, and what the test split and CV folds need): {what}, or leave sample empty")


def frozen_sample(config, window):
    """The run's config with the rate and positive class its window was sampled with (as
    ``as_of`` is frozen), what the costs and the model card then speak of."""
    sample = window.lineage.get("sample")
    if not sample:
        return config
    return config.model_copy(update={"sample": sample["rate"],
                                     "positive": config.positive or sample["positive"]})
