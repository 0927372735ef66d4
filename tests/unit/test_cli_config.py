"""Configuration layering (flows/cli_config.py): flags > --config file > RAREFLOW_* variables >
./rareflow.yaml > the config model's defaults, for a few fields, through the functions and
through `rareflow train`'s own parsing, and the one line that says which source chose the
model."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli_config import build_config, chosen_by, project_origin
from schemas.config import IngestConfig, TrainingConfig
from schemas.errors import ConfigError

REQUIRED = {"data": "x.csv", "label": "y"}
PROJECT = "registry: from_project\nname: project_model\n"
ENV = {"RAREFLOW_REGISTRY": "from_env", "RAREFLOW_NAME": "env_model"}
CONFIG = "registry: from_config\nname: config_model\ncosts: {fn_cost: 7}\nseed: 4\n"
FLAGS = {"registry": "from_flag", "name": "flag_model", "costs.fn_cost": 9.0, "seed": 5}


def layers(tmp_path, given: str):
    """cwd, env, config file and flags holding every layer from the lowest up to ``given``."""
    order = ["default", "project", "env", "config", "flags"]
    on = set(order[:order.index(given) + 1])
    if "project" in on:
        (tmp_path / "rareflow.yaml").write_text(PROJECT)
    config = tmp_path / "settings.yaml"
    if "config" in on:
        config.write_text(CONFIG)
    return dict(cwd=tmp_path, env=ENV if "env" in on else {},
                config_file=config if "config" in on else None,
                flags={**REQUIRED, **(FLAGS if "flags" in on else {})})


@pytest.mark.parametrize("top, registry, name, fn_cost, seed", [
    ("default", "registry", "model", 10.0, 0),
    ("project", "from_project", "project_model", 10.0, 0),
    ("env", "from_env", "env_model", 10.0, 0),
    ("config", "from_config", "config_model", 7.0, 4),
    ("flags", "from_flag", "flag_model", 9.0, 5),
])
def test_each_layer_beats_the_ones_below(tmp_path, top, registry, name, fn_cost, seed):
    """Check that with every layer up to ``top`` present, ``top`` decides each field it
    holds, and fields it does not hold come from the next layer down."""
    given = layers(tmp_path, top)
    cfg = build_config(TrainingConfig, given["config_file"], given["flags"],
                       cwd=tmp_path, env=given["env"])
    assert (cfg.registry, cfg.name, cfg.costs.fn_cost, cfg.seed) == (registry, name, fn_cost,
                                                                     seed)
    assert cfg.costs.fp_cost == 1.0  # no layer gives it: the model's default


@pytest.mark.parametrize("top, origin", [
    ("default", "the default"), ("project", "{project}"), ("env", "$RAREFLOW_REGISTRY"),
    ("config", "--config {config}"), ("flags", "--registry")])
def test_the_origin_names_the_layer_that_chose_the_registry(tmp_path, top, origin):
    """Check that the phrase naming where `registry` came from is the deciding layer's."""
    given = layers(tmp_path, top)
    where = chosen_by(TrainingConfig, given["config_file"], given["flags"], "registry",
                      cwd=tmp_path, env=given["env"])
    assert where == origin.format(project=tmp_path / "rareflow.yaml",
                                  config=tmp_path / "settings.yaml")


def test_a_flag_inside_a_section_keeps_the_files_other_keys(tmp_path):
    """Check that `--fp-cost` overrides one key of the file's `costs:` section, not all."""
    config = tmp_path / "c.yaml"
    config.write_text("costs: {fn_cost: 7, max_alert_rate: 0.01}\n")
    cfg = build_config(TrainingConfig, config, {**REQUIRED, "costs.fp_cost": 2.0},
                       cwd=tmp_path, env={})
    assert (cfg.costs.fn_cost, cfg.costs.fp_cost, cfg.costs.max_alert_rate) == (7, 2, 0.01)


def test_ingest_takes_only_the_name_from_the_project_layers(tmp_path):
    """Check that a model without `registry` takes the name, not the registry, of the
    variables and the project file."""
    (tmp_path / "rareflow.yaml").write_text(PROJECT)
    cfg = build_config(IngestConfig, None, {"data": "b.csv", "source": "src"}, cwd=tmp_path,
                       env={"RAREFLOW_REGISTRY": "from_env"})
    assert cfg.name == "project_model"


def test_a_project_file_with_other_keys_is_refused(tmp_path):
    (tmp_path / "rareflow.yaml").write_text("registry: r\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"rareflow.yaml holds the project's defaults"):
        build_config(TrainingConfig, None, REQUIRED, cwd=tmp_path, env={})


def test_train_says_which_file_or_variable_chose_the_model(tmp_path, monkeypatch):
    """Check, through `rareflow train`'s own flags, that the layers meet in the config it
    runs with, and that it says in one line which file or variable chose registry and name."""
    import flows.cli as cli
    from flows.cli_errors import CliState

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rareflow.yaml").write_text(PROJECT)
    (tmp_path / "settings.yaml").write_text("costs: {fn_cost: 7}\nseed: 4\n")
    monkeypatch.setenv("RAREFLOW_NAME", "env_model")
    seen = {}
    monkeypatch.setattr(cli, "run_training", lambda config, server=None: seen.setdefault(
        "config", config) and 0)
    monkeypatch.setattr(cli, "FlowServer", lambda: None)
    done = CliRunner().invoke(cli.app, ["train", "--data", "x.csv", "--label", "y",
                                        "--config", "settings.yaml", "--seed", "5",
                                        "--class-weight", "{0: 1, 1: 50}"],
                              obj=CliState())
    assert done.exit_code == 0, done.output
    cfg = seen["config"]
    assert (cfg.registry, cfg.name, cfg.costs.fn_cost, cfg.seed) == (
        "from_project", "env_model", 7.0, 5)
    assert cfg.strategy.class_weight == {0: 1.0, 1: 50.0}
    said = [line for line in done.output.splitlines() if line.startswith("Model ")]
    assert said == [f"Model 'env_model' in registry 'from_project' (from registry from "
                    f"{tmp_path / 'rareflow.yaml'}, name from $RAREFLOW_NAME; --name/--registry "
                    "choose another)"]
    assert project_origin(None, {"registry": "r", "name": "n"}) is None


def test_the_storage_options_flag_reaches_the_config_and_never_echoes_a_secret(tmp_path,
                                                                             monkeypatch):
    """Check that `rareflow train --storage-options '{...}'` (JSON) is the config's
    storage_options, and that bad JSON or a credential exits 2 in one line naming the setting,
    without the value."""
    import flows.cli as cli
    from flows.cli_errors import CliState

    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(cli, "run_training", lambda config, server=None: seen.setdefault(
        "config", config) and 0)
    monkeypatch.setattr(cli, "FlowServer", lambda: None)

    def train(options: str):
        return CliRunner().invoke(cli.app, ["train", "--data", "s3://bucket/tx", "--label", "y",
                                            "--storage-options", options], obj=CliState())

    done = train('{"endpoint_url": "http://127.0.0.1:9000", "client_kwargs": '
                 '{"region_name": "eu-west-1"}}')
    assert done.exit_code == 0, done.output
    assert seen["config"].storage_options == {"endpoint_url": "http://127.0.0.1:9000",
                                              "client_kwargs": {"region_name": "eu-west-1"}}
    for bad, says in (('{"secret": "hunter2"}', "is a credential"),
                      ('{"endpoint_url": "https://u:hunter2@host"}', "is a credential"),
                      ("hunter2", "a JSON object")):
        done = train(bad)
        lines = [line for line in done.output.splitlines() if line.strip()]
        assert done.exit_code == 2 and len(lines) == 1, done.output
        assert "storage_options" in lines[0] and says in lines[0]
        assert "hunter2" not in done.output
