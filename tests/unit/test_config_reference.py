"""docs/configuration.md is generated from the config models (flows/config_reference.py):
it must be up to date and name every field."""

from __future__ import annotations

from flows.cli_config import field_paths
from flows.config_reference import DOC, MODELS, configuration_markdown, main


def test_committed_reference_is_up_to_date():
    """Check that docs/configuration.md is exactly what the generator makes from the models
    (rerun `python -m flows.config_reference` after changing schemas/config.py)."""
    assert DOC.read_text(encoding="utf-8") == configuration_markdown(), (
        "docs/configuration.md is out of date: run `python -m flows.config_reference`")
    assert main(["--check"]) == 0


def test_reference_names_every_field_with_its_flag():
    """Check that every field of every command's model appears with its dotted key, and that
    fields with a flag show it."""
    text = configuration_markdown()
    for _, model in MODELS:
        for path in field_paths(model).values():
            assert f"| `{path}` |" in text, path
    assert "| `strategy.n_jobs` | int | `1` | `--n-jobs` |" in text
    assert "`gates.bootstrap_samples`" in text and "`gates.recall_margin`" in text
    assert "`strategy.max_candidates`" in text and "`strategy.calibrate`" in text
