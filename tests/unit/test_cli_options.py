"""Flags drawn from the config models (flows/cli_options.py): one per field, named once."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel, Field

from flows.cli_config import leaf_paths
from flows.cli_options import FlagNames, flag_type
from flows.config_reference import MODELS, command_flags


@pytest.mark.parametrize("command, model", MODELS)
def test_every_field_of_a_command_has_one_flag(command, model):
    """Check that each leaf field of the command's model is a flag of the command, and that
    no two fields share a flag."""
    flags = command_flags(command)
    paths = {path.replace(".", "__") for path in leaf_paths(model)}
    assert paths <= set(flags), paths - set(flags)
    names = [flags[path] for path in paths]
    assert len(names) == len(set(names))


def test_the_flags_earlier_releases_named_keep_their_names():
    flags = command_flags("train")
    assert flags["split__n_folds"] == "`--folds`"
    assert flags["strategy__time_budget_s"] == "`--time-budget`"
    assert flags["costs__min_recall"] == "`--min-recall`"
    assert flags["gates__min_recall"] == "`--min-recall-gate`"
    monitor = command_flags("monitor")
    assert monitor["recall_tolerance"] == "`--tolerance`"
    assert monitor["since_last_check"] == "`--since-last-check`"


class Inner(BaseModel):
    level: float = Field(0.5, description="A level.")


class Clashing(BaseModel):
    level: float | None = Field(None, description="Another level.")
    inner: Inner = Field(default_factory=Inner)
    on: bool = Field(True, description="A switch.")


def test_two_fields_with_one_flag_are_refused_until_one_is_renamed():
    with pytest.raises(ValueError, match=r"inner.level and level both have flag --level"):
        FlagNames(Clashing).parameters()
    renamed = FlagNames(Clashing, suffixes={"inner": "inner"}).parameters()
    assert [p.default.param_decls for p in renamed] == [
        ("--level",), ("--level-inner",), ("--on/--no-on",)]


@pytest.mark.parametrize("annotation, parsed", [
    (float, float), (float | None, float), (int | None, int), (bool, bool), (str | None, str),
    (int | dict, str)])
def test_flags_parse_numbers_and_switches_and_leave_the_rest_to_the_model(annotation, parsed):
    assert flag_type(annotation) is parsed


def test_help_names_the_choices_and_the_default():
    """Check that a field of choices lists them in its flag's help, with its default."""
    from flows.cli_options import option_help
    from schemas.config import MonitoringConfig, TrainingConfig

    assert option_help(TrainingConfig, "strategy.model").endswith(
        "(one of: auto, logreg, hgb, rf, brf, gboost, iforest; default: auto)")
    assert "(one of: bound, point; default: bound)" in option_help(TrainingConfig,
                                                                    "gates.absolute_gates")
    assert "one of" not in option_help(TrainingConfig, "strategy.class_weight")
    assert option_help(MonitoringConfig, "rescore").endswith("(default: False)")


@pytest.mark.parametrize("flag, value, message", [
    ("--class-weight", "[1, 2]", r"^error: --class-weight must be none, balanced, auto or a "
     r"mapping like '\{0: 1, 1: 50\}'; got '\[1, 2\]'$"),
    ("--model", "nope", r"^error: invalid configuration: strategy\.model: Input should be "
     r"'auto', .*\(got 'nope'\)$"),
    ("--approval-gate", "maybe", r"^error: invalid configuration: gates\.approval: .*"
     r"\(got 'maybe'\)$"),
])
def test_a_bad_flag_value_is_one_line_naming_it_and_exit_2(monkeypatch, flag, value, message):
    """Check that a flag the model refuses stops `train` before any work, in one line that
    names the field, with exit status 2."""
    from typer.testing import CliRunner

    import flows.cli as cli
    from flows.cli_errors import CliState

    monkeypatch.setattr(cli, "run_training", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(cli, "FlowServer", lambda: None)
    done = CliRunner().invoke(cli.app, ["train", "--data", "x.csv", "--label", "y", flag, value],
                              obj=CliState())
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and re.match(message, lines[0]), lines
