"""A data file's CSV text is capped while it is read: a gzip bomb stops as it inflates."""

from __future__ import annotations

import time

import pytest

from schemas.errors import ConfigError, DataError
from tasks.data.tables import MAX_INPUT_BYTES, MAX_INPUT_BYTES_ENV, load_table, max_input_bytes


def test_a_gzip_bomb_stops_at_the_cap(gzip_bomb, monkeypatch):
    """Check that a gzipped CSV inflating past RAREFLOW_MAX_INPUT_BYTES is refused as it is
    read, naming the file, the cap and what to do."""
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "4000000")
    started = time.monotonic()
    with pytest.raises(DataError, match=r"bomb.csv.gz' holds more than 4,000,000 bytes of CSV "
                                        r"text \(decompressed\); convert it to Parquet"):
        load_table(gzip_bomb)
    assert time.monotonic() - started < 5
    monkeypatch.setenv(MAX_INPUT_BYTES_ENV, "100000000")
    assert len(load_table(gzip_bomb)) == 10_700_000


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
