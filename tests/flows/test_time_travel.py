"""Time travel through `rareflow train` on a source dated only by its folders: a version "as
of 2000" learns from the partitions dated before 2000 and nothing later."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from schemas.errors import EXIT_BAD_INPUT, EXIT_OK
from tasks.registry.store import Registry

YEARS = [f"{year}-07-01" for year in range(1997, 2003)]


def cli(*args: str):
    from flows.cli import app

    return CliRunner().invoke(app, list(args))


def test_train_as_of_reads_only_the_partitions_dated_before_it(prefect_harness, tmp_path):
    """Check that `rareflow train --as-of 2000-01-01` on hive partitions date=1997-07-01/ to
    date=2002-07-01/ without a time column trains on 1997-1999 only (the lineage lists exactly
    those files), and that --as-of (train) or --window (monitor) on a plain file without any
    time is refused in one line."""
    rng = np.random.default_rng(0)
    root = tmp_path / "years"
    for day in YEARS:
        n = 300
        y = (rng.random(n) < 0.2).astype(int)
        frame = pd.DataFrame({"year": np.full(n, int(day[:4])),
                              "x": rng.normal(size=n) + 1.5 * y, "y": y})
        (root / f"date={day}").mkdir(parents=True)
        frame.to_parquet(root / f"date={day}" / "part-0.parquet", index=False)
    registry = tmp_path / "registry"
    common = ("--label", "y", "--registry", str(registry), "--name", "years", "--model", "logreg",
              "--sampler", "none", "--class-weight", "balanced", "--folds", "3",
              "--bootstrap-samples-gate", "200")
    run = cli("train", "--data", str(root), "--as-of", "2000-01-01", *common)
    assert run.exit_code == EXIT_OK, run.output
    lineage = Registry(registry, "years").metadata("v0001")["lineage"]
    assert [f["path"] for f in lineage["files"]] == [f"date={d}/part-0.parquet"
                                                     for d in YEARS[:3]]
    assert lineage["rows"] == 900 and lineage["partition_date_key"] == "date"
    plain = tmp_path / "plain.parquet"
    pd.read_parquet(root / f"date={YEARS[0]}").to_parquet(plain, index=False)
    run = cli("train", "--data", str(plain), "--as-of", "2000-01-01", *common)
    assert run.exit_code == EXIT_BAD_INPUT, run.output
    error = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "as_of 2000-01-01 needs each row's time" in error[0]
    assert "--time-column" in error[0]
    assert Registry(registry, "years").version_ids() == ["v0001"]
    run = cli("monitor", "--data", str(plain), "--window", "30d", "--registry", str(registry),
              "--name", "years")
    assert run.exit_code == EXIT_BAD_INPUT, run.output
    assert "window 30d needs each row's time" in run.output
