"""Peak memory of a sampled training window: Parquet partitions read one record batch at a time
against each read whole (a batch as large as the partition, what the scan did before).

A generated source of 2 daily partitions x 3 million rows (20 float columns, 0.3 % positives,
row groups of 500,000 rows; about 500 MB each in memory) is read with ``sample: 0.02`` by
:func:`tasks.data.window.read_training_window` in a child process per run; the parent reads
each child's peak RSS from ``os.wait4``. Results: ``benchmarks/results/sampled_scan_memory.md``.

    python -m uv run python benchmarks/sampled_scan_memory.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ROWS, PARTITIONS, RATE = 3_000_000, 2, 0.02

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from schemas.config import TrainingConfig
from tasks.data import scan
from tasks.data.window import read_training_window
scan.SAMPLED_BATCH_ROWS = {batch}
t = time.perf_counter()
w = read_training_window(TrainingConfig(data={source!r}, label="y", sample={rate}), needed=5)
print(json.dumps({{"rows": len(w.frame), "seconds": time.perf_counter() - t}}))
"""


def write_source(root: Path) -> float:
    """The partitions; returns one partition's in-memory size in MB."""
    rng = np.random.default_rng(0)
    for day in range(PARTITIONS):
        frame = pd.DataFrame(rng.standard_normal((ROWS, 20)), columns=[f"x{i}" for i in range(20)])
        frame["y"] = (rng.random(ROWS) < 0.003).astype(int)
        folder = root / f"date=2026-11-0{day + 1}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part.parquet", index=False, row_group_size=500_000)
    return frame.memory_usage(deep=True).sum() / 2**20


def run(source: Path, batch: int) -> dict:
    code = CHILD.format(root=str(ROOT), batch=batch, source=str(source), rate=RATE)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f"child failed with batch {batch}")
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    return {**result, "peak_rss_mb": usage.ru_maxrss / 1024}


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", help=argparse.SUPPRESS)  # (the child that writes the source)
    args = parser.parse_args()
    if args.write:
        print(write_source(Path(args.write)))
        return
    sys.path.insert(0, str(ROOT))
    from tasks.data.scan import SAMPLED_BATCH_ROWS

    rows = []
    with tempfile.TemporaryDirectory(prefix="rareflow-scan-") as tmp:
        # written by a child: a child forked from a parent that held the frames would count
        # them in its own peak (ru_maxrss is inherited across fork)
        partition_mb = float(subprocess.run(
            [sys.executable, __file__, "--write", str(Path(tmp) / "source")], check=True,
            capture_output=True, text=True).stdout.strip().splitlines()[-1])
        for k in range(args.repeats):
            for name, batch in (("one record batch", SAMPLED_BATCH_ROWS),
                                ("whole partition", ROWS)):
                result = run(Path(tmp) / "source", batch)
                rows.append({"read": name, "batch_rows": batch, "repeat": k + 1, **result})
                print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    summary = table.groupby("read", sort=False).agg(
        batch_rows=("batch_rows", "first"), kept_rows=("rows", "first"),
        seconds_median=("seconds", "median"), peak_rss_mb_max=("peak_rss_mb", "max"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sampled_scan_memory.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "sampled_scan_memory.md").write_text(
        "# Peak memory of a sampled window: record batches vs whole partitions\n\n"
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores: `python -m uv run "
        f"python benchmarks/sampled_scan_memory.py --repeats {args.repeats}`. Source: "
        f"{PARTITIONS} Parquet partitions x {ROWS:,} rows (21 columns, {partition_mb:.0f} MB "
        f"each in memory), `sample: {RATE}`; the same rows are kept either way.\n\n"
        + markdown(summary.reset_index().round(1)) + "\n")
    print(summary.to_string())


if __name__ == "__main__":
    main()
