"""Settings files are read within caps: size, alias expansion, encoding, nesting."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.errors import ConfigError
from schemas.yaml_files import MAX_CONFIG_BYTES, load_yaml_file

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


@pytest.mark.parametrize("content, message", [
    (LAUGHS, r"expands to more than 100,000 values through its YAML aliases"),
    ("a: &a [*a, *a]\n", r"expands to more than"),
    (b"label: caf\xe9\n", r"is not UTF-8 text \(byte 10\)"),
    ("label: [unclosed\n", r"is not valid YAML at line 2"),
    ("[" * 5000 + "]" * 5000, r"nests too deeply|expands to more than"),
    ("x: " + "y" * (MAX_CONFIG_BYTES + 1), r"bytes; a settings file holds at most 1,048,576"),
])
def test_bad_settings_files_are_one_line_errors(tmp_path, content, message):
    """Check that a billion-laughs file, a self-referencing alias, bad bytes, bad syntax,
    deep nesting and an oversized file each raise one line naming the file, quickly, without
    echoing the content."""
    path = tmp_path / "config.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    with pytest.raises(ConfigError, match=message) as info:
        load_yaml_file(path)
    assert time.monotonic() - started < 5
    text = str(info.value)
    assert str(path) in text and "\n" not in text and "lol" not in text and "yyyy" not in text


def test_aliases_within_the_bound_still_load(tmp_path):
    """Check that ordinary anchors and merge keys (as prefect.yaml uses them) load."""
    path = tmp_path / "ok.yaml"
    path.write_text("base: &base {label: y, window: 90d}\ntrain:\n  <<: *base\n  name: m\n")
    assert load_yaml_file(path)["train"] == {"label": "y", "window": "90d", "name": "m"}


def test_train_refuses_a_billion_laughs_config(tmp_path):
    """Check that `rareflow train --config` with a billion-laughs file exits 2 with one line
    at once, before any work."""
    path = tmp_path / "bomb.yaml"
    path.write_text(LAUGHS)
    result = CliRunner().invoke(app, ["train", "--config", str(path), "--data", "x.csv",
                                      "--label", "y"])
    output = result.output + result.stderr
    assert result.exit_code == 2, output
    assert "expands to more than" in output and "lol" not in output
