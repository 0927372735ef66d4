"""A data file's CSV text is capped while it is read: a gzip bomb stops as it inflates."""

from __future__ import annotations

import gzip
import time

import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.errors import ConfigError, DataError
from tasks.data.tables import MAX_INPUT_BYTES, MAX_INPUT_BYTES_ENV, load_table, max_input_bytes


@pytest.fixture()
def bomb(tmp_path):
    """A 64 MB CSV (a header and one repeated row) gzipped to well under 1 MB."""
    path = tmp_path / "bomb.csv.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(b"amount,is_fraud\n")
        block = b"1.0,0\n" * 100_000
        for _ in range(107):
            fh.write(block)
    assert path.stat().st_size < 1_000_000
    return path


def test_a_gzip_bomb_stops_at_the_cap(bomb, monkeypatch):
    """Check that a gzipped CSV inflating past RAREFLOW_MAX_INPUT_BYTES is refused as it is
    read, naming the file, the cap and what to do."""
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "4000000")
    started = time.monotonic()
    with pytest.raises(DataError, match=r"bomb.csv.gz' holds more than 4,000,000 bytes of CSV "
                                        r"text \(decompressed\); convert it to Parquet"):
        load_table(bomb)
    assert time.monotonic() - started < 5
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "100000000")
    assert len(load_table(bomb)) == 10_700_000


def test_a_plain_csv_over_the_cap_is_refused_before_reading(tmp_path, monkeypatch):
    """Check that an uncompressed CSV larger than the cap is refused from its size."""
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "1,0\n" * 1000)
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "1000")
    with pytest.raises(DataError, match="big.csv' holds more than 1,000 bytes"):
        load_table(path)


@pytest.mark.parametrize("value, expected", [("", MAX_INPUT_BYTES), ("5e9", 5_000_000_000),
                                             ("0", ConfigError), ("lots", ConfigError)])
def test_the_cap_setting(value, expected):
    """Check that the cap defaults to 1 GiB, reads plain or scientific numbers, and refuses
    anything else with the setting's name."""
    env = {MAX_INPUT_BYTES_ENV: value}
    if expected is ConfigError:
        with pytest.raises(ConfigError, match=MAX_INPUT_BYTES_ENV):
            max_input_bytes(env)
    else:
        assert max_input_bytes(env) == expected


@pytest.mark.slow
def test_train_refuses_a_gzip_bomb_in_one_line(bomb, tmp_path, monkeypatch):
    """Check that `rareflow train` on a gzip bomb exits 2 with one line and registers
    nothing."""
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "4000000")
    monkeypatch.setenv("RAREFLOW_ALLOW_UNSIGNED", "1")
    registry = tmp_path / "registry"
    result = CliRunner().invoke(app, ["train", "--data", str(bomb), "--label", "is_fraud",
                                      "--registry", str(registry), "--name", "m"])
    output = result.output + result.stderr
    assert result.exit_code == 2, output
    assert "holds more than 4,000,000 bytes" in output and "Traceback" not in output
    versions = registry / "m" / "versions"
    assert not versions.exists() or not any(versions.iterdir())


@pytest.mark.parametrize("header, message", [
    ("deny,deny ,y", r"duplicate column names: \['deny', 'deny '\]; some differ only in spaces"),
    ("a,a,y", r"duplicate column names: \['a'\]$"),
])
def test_duplicate_names_are_named_as_written(tmp_path, header, message):
    """Check that columns differing only in surrounding spaces are named as written, so the
    user sees which two clash."""
    path = tmp_path / "t.csv"
    path.write_text(f"{header}\n1,2,0\n")
    with pytest.raises(DataError, match=message):
        load_table(path)
