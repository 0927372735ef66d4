"""A first run without a hunt: the user's signing key (made once, found by every command),
errors that point at the right key, the project file for every command, the champion check
of the preflight, a Prefect home of rareflow's own, and errors printed once."""

from __future__ import annotations

import logging
import os
import stat

import pandas as pd
import pytest

from flows.cli_config import build_config, project_origin
from flows.cli_log_filter import QuietExpectedErrors
from schemas.config import IngestConfig, TrainingConfig
from schemas.errors import ConfigError, IntegrityError, RegistryError
from schemas.inference import FeatureSpec, InputSchema
from tasks.registry import signing
from tasks.registry.preflight import preflight
from tasks.registry.store import Registry
from tasks.runtime._temporary_server import private_prefect_home, use_private_prefect_home

KEY_VARS = (signing.KEY_ENV, signing.KEY_FILE_ENV, signing.KEY_BLOCK_ENV,
            signing.ALLOW_UNSIGNED_ENV)


def user_env(tmp_path, **extra) -> dict:
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            **extra}


def test_first_key_is_made_private_once_and_found_again(tmp_path):
    """Check that with no key configured a key is made in $XDG_CONFIG_HOME/rareflow (file
    0600, folder 0700), and the next call finds the same key there without making another."""
    env = user_env(tmp_path)
    key, created = signing.ensure_key(env)
    path = tmp_path / "config" / "rareflow" / "signing.key"
    assert created == path and key is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again, created_again = signing.ensure_key(env)
    assert created_again is None and again.key_id == key.key_id
    assert str(path) in signing.signing_key(env).source
    assert [p.name for p in path.parent.iterdir()] == ["signing.key"]  # no temporary left


def test_default_config_folder_is_under_home(tmp_path):
    """Check that without XDG_CONFIG_HOME the key goes to ~/.config/rareflow/signing.key."""
    env = {"HOME": str(tmp_path)}
    assert signing.user_key_path(env) == tmp_path / ".config" / "rareflow" / "signing.key"


@pytest.mark.parametrize("var", [signing.KEY_ENV, signing.KEY_FILE_ENV])
def test_an_explicit_key_wins_over_the_user_file(tmp_path, var):
    """Check that RAREFLOW_SIGNING_KEY(_FILE) wins over the user's key file and that
    nothing is made when one is set."""
    env = user_env(tmp_path)
    signing.ensure_key(env)  # the user's file exists
    explicit = "e" * 40
    if var == signing.KEY_FILE_ENV:
        (tmp_path / "k").write_text(explicit)
        env[var] = str(tmp_path / "k")
    else:
        env[var] = explicit
    key, created = signing.ensure_key(env)
    assert created is None and key.secret == explicit.encode()


def test_no_key_is_made_when_unsigned_versions_are_asked_for(tmp_path):
    """Check that RAREFLOW_ALLOW_UNSIGNED=1 with no key keeps writing unsigned versions."""
    env = user_env(tmp_path, **{signing.ALLOW_UNSIGNED_ENV: "1"})
    assert signing.ensure_key(env) == (None, None)
    assert not (tmp_path / "config").exists()


@pytest.fixture
def demo_layout(tmp_path, monkeypatch):
    """An older demo's folder: rareflow-demo/signing.key and a registry signed with it."""
    monkeypatch.chdir(tmp_path)
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    demo = tmp_path / "rareflow-demo"
    demo.mkdir()
    secret = signing.generate_key()
    signing.write_key_file(demo / "signing.key", secret)
    old = signing.SigningKey(secret.encode(), "old demo")
    reg = Registry(demo / "registry", "demo", key=old)
    reg.promote(reg.register({"a": 1}, {"verdict": {"status": "passed"}}), reason="first")
    return demo, secret, old


def test_an_unverifiable_version_points_at_the_nearby_key(demo_layout, monkeypatch):
    """Check that a version signed with another key names the key source in use and the
    nearby key file with the right id (rareflow-demo/signing.key), and never the key."""
    demo, secret, old = demo_layout
    signing.ensure_key()  # a new user key: not the one the demo signed with
    with pytest.raises(IntegrityError) as caught:
        Registry(demo / "registry", "demo").verify("v0001")
    text = str(caught.value)
    assert "user key file" in text and old.key_id in text
    assert f"{signing.KEY_FILE_ENV}={demo / 'signing.key'}" in text
    assert secret not in text and "\n" not in text


def test_no_key_at_all_points_at_the_nearby_key(demo_layout):
    """Check that with no key anywhere, reading a signed version names the key file that
    has its id instead of suggesting a new key."""
    demo, secret, _ = demo_layout
    with pytest.raises(RegistryError, match=r"no signing key is configured") as caught:
        Registry(demo / "registry", "demo").verify("v0001")
    assert f"{signing.KEY_FILE_ENV}={demo / 'signing.key'}" in str(caught.value)
    assert "keygen" not in str(caught.value) and secret not in str(caught.value)


def test_no_new_key_for_a_registry_signed_with_another(demo_layout, tmp_path):
    """Check that train makes no new key for a model that already has versions (they could
    not be verified with it), and its preflight names the nearby key that signed them."""
    from flows.cli_preflight import ensure_signing_key

    demo, secret, _ = demo_layout
    said: list[str] = []
    ensure_signing_key(said.append, registry=str(demo / "registry"), name="demo")
    assert said == [] and not (tmp_path / "config").exists()
    config = TrainingConfig(data="never-read.csv", label="y", registry=str(demo / "registry"),
                            name="demo")
    with pytest.raises(RegistryError) as caught:
        preflight(config)
    assert f"{signing.KEY_FILE_ENV}={demo / 'signing.key'}" in str(caught.value)
    ensure_signing_key(said.append, registry=str(tmp_path / "new"), name="demo")
    assert len(said) == 1 and (tmp_path / "config" / "rareflow" / "signing.key").is_file()


def test_ingest_takes_the_project_file_and_environment(tmp_path, monkeypatch):
    """Check that `ingest` accepts ./rareflow.yaml and RAREFLOW_REGISTRY/RAREFLOW_NAME
    (it uses the name, ignores the registry) instead of an invalid-configuration error."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rareflow.yaml").write_text("registry: rareflow-demo/registry\nname: demo\n")
    flags = {"data": "batch.csv", "source": "src"}
    assert build_config(IngestConfig, None, flags).name == "demo"
    monkeypatch.setenv("RAREFLOW_REGISTRY", "elsewhere")
    monkeypatch.setenv("RAREFLOW_NAME", "fraud")
    assert build_config(IngestConfig, None, flags).name == "fraud"


def test_origin_names_the_file_or_variable_that_chose_the_model(tmp_path, monkeypatch):
    """Check that train's origin line names ./rareflow.yaml, $RAREFLOW_* or the flags."""
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "rareflow.yaml"
    project.write_text("registry: reg\nname: demo\n")
    assert project_origin(None, {"registry": None, "name": None}) == str(project)
    assert project_origin(None, {"registry": "r", "name": "n"}) is None
    monkeypatch.setenv("RAREFLOW_NAME", "fraud")
    assert project_origin(None, {"registry": None, "name": None}) == \
        f"registry from {project}, name from $RAREFLOW_NAME"
    settings = tmp_path / "cfg.yaml"
    settings.write_text("name: other\n")
    assert project_origin(settings, {"registry": "r", "name": None}) == \
        f"registry from --registry, name from --config {settings}"
    project.unlink()
    monkeypatch.delenv("RAREFLOW_NAME")
    assert project_origin(None, {"registry": None, "name": None}) == "the default"


@pytest.fixture
def champion_registry(tmp_path):
    """A registry whose champion was trained on columns amount (numeric) and kind, label y."""
    schema = InputSchema(label="y", positive="1", negative="0", features=[
        FeatureSpec(name="amount", kind="numeric", dtype="float64"),
        FeatureSpec(name="kind", kind="categorical", dtype="object", categories=["a", "b"])])
    reg = Registry(tmp_path / "registry", "demo")
    reg.promote(reg.register({"a": 1}, {"verdict": {"status": "passed"},
                                        "schema": schema.model_dump()}), reason="first")
    return reg


@pytest.mark.parametrize("table, label, problem", [
    ({"f0": [1.0, 2.0], "kind": ["a", "b"], "y": [0, 1]}, "y", "column 'amount' is missing"),
    ({"amount": ["ten", "x"], "kind": ["a", "b"], "y": [0, 1]}, "y", "'amount' has values of "
     "the wrong type"),
    ({"amount": [True, False], "kind": ["a", "b"], "y": [0, 1]}, "y", "true/false"),
    ({"amount": [1.0, 2.0], "kind": ["a", "b"], "bad": [0, 1]}, "bad", "label 'y'"),
])
def test_a_champion_that_cannot_judge_the_table_is_refused(champion_registry, tmp_path,
                                                          table, label, problem):
    """Check that preflight refuses (exit 2, one line) a table the champion's frozen input
    schema cannot score, or another label, naming the model, registry and what chose them,
    and registers nothing."""
    data = tmp_path / "new.csv"
    pd.DataFrame(table).to_csv(data, index=False)
    config = TrainingConfig(data=str(data), label=label, registry=str(champion_registry.root),
                            name="demo")
    with pytest.raises(ConfigError) as caught:
        preflight(config, chosen_by="./rareflow.yaml")
    text = str(caught.value)
    assert problem in text and "'demo'" in text and str(champion_registry.root) in text
    assert "./rareflow.yaml" in text and "--name NEW" in text and "\n" not in text
    assert champion_registry.version_ids() == ["v0001"]


def test_a_partitioned_source_is_checked_on_its_newest_partition(champion_registry, tmp_path):
    """Check that for a folder of Parquet partitions the newest one is sampled, with its
    hive keys as columns (here `kind`), and a missing feature column is refused."""
    for day, columns in (("2026-01-01", {"amount": [1.0, 2.0]}),
                         ("2026-01-02", {"other": [1.0, 2.0]})):
        folder = tmp_path / "src" / f"kind={day}"
        folder.mkdir(parents=True)
        pd.DataFrame({**columns, "y": [0, 1]}).to_parquet(folder / "part.parquet")
    config = TrainingConfig(data=str(tmp_path / "src"), label="y",
                            registry=str(champion_registry.root), name="demo")
    with pytest.raises(ConfigError, match="column 'amount' is missing; to train"):
        preflight(config)


@pytest.mark.parametrize("table", [
    {"amount": [1.0, 2.0], "kind": ["a", "c"], "extra": [1, 2], "y": [0, 1]},  # fits
    {"amount": [1.0, "twelve"], "kind": ["a", "b"], "y": [0, 1]},  # a bad value: validation's
    {"f0": [1.0, 2.0], "kind": ["a", "b"]},  # no label column: validation's
    {"y": [0, 1]},  # nothing but the label: validation's
])
def test_a_table_the_champion_can_score_or_bad_data_passes(champion_registry, tmp_path, table):
    """Check that a table with the champion's columns (and more) passes the preflight, and
    so do tables whose problem is the data's (some bad values, no label column, no
    features), which the validation reports with its own message."""
    data = tmp_path / "new.csv"
    pd.DataFrame(table).to_csv(data, index=False)
    config = TrainingConfig(data=str(data), label="y", registry=str(champion_registry.root),
                            name="demo")
    assert preflight(config).name == "demo"


@pytest.fixture
def no_prefect_choice(tmp_path, monkeypatch):
    """An environment with no Prefect settings of the user's (no profile, no home)."""
    for name in ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "profiles.toml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_runs_get_a_prefect_home_of_their_own(no_prefect_choice):
    """Check that with no Prefect settings the CLI's Prefect home is in rareflow's cache
    folder, and the user's profiles file (and logging.yml, when they have one) stay in
    force."""
    updates = private_prefect_home()
    assert updates["PREFECT_HOME"] == str(no_prefect_choice / "cache" / "rareflow" / "prefect")
    assert updates["PREFECT_PROFILES_PATH"] == str(no_prefect_choice / "profiles.toml")
    assert "PREFECT_LOGGING_CONFIG_PATH" not in updates
    own = no_prefect_choice / "home" / ".prefect" / "logging.yml"
    own.parent.mkdir(parents=True)
    own.write_text("version: 1\n")
    assert private_prefect_home()["PREFECT_LOGGING_CONFIG_PATH"] == str(own)


def test_an_unwritable_cache_leaves_prefects_default(no_prefect_choice, monkeypatch):
    """Check that when rareflow's Prefect home cannot be made (here the cache folder is a
    file) the command keeps Prefect's default instead of failing."""
    blocker = no_prefect_choice / "cache-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert use_private_prefect_home() == {}
    assert "PREFECT_HOME" not in os.environ


@pytest.mark.parametrize("how", ["api-url", "home", "profile-url", "profile-home"])
def test_a_users_own_prefect_choice_is_left_alone(no_prefect_choice, monkeypatch, how):
    """Check that PREFECT_API_URL or PREFECT_HOME, in the environment or in the active
    Prefect profile, keep the CLI on the user's Prefect setup."""
    setting = {"api-url": ("PREFECT_API_URL", "http://127.0.0.1:4200/api"),
               "home": ("PREFECT_HOME", str(no_prefect_choice / "mine"))}
    if how in setting:
        monkeypatch.setenv(*setting[how])
    else:
        key, value = setting["api-url" if how == "profile-url" else "home"]
        (no_prefect_choice / "profiles.toml").write_text(
            f'active = "mine"\n[profiles.mine]\n{key} = "{value}"\n')
    assert private_prefect_home() == {}


def record(name: str, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)


def test_an_expected_error_reaches_the_terminal_once():
    """Check that the terminal filter drops Prefect's copies of an error rareflow prints
    itself (the failed run with the exception, the final states), and keeps other lines."""
    quiet = QuietExpectedErrors()
    error = RegistryError("no signing key is configured, so 'fraud' versions cannot be signed")
    assert not quiet.filter(record("prefect.task_runs", f"Task run failed: {error!r}", error))
    assert not quiet.filter(record("prefect.task_runs",
                                   f"Finished in state Failed({str(error)!r})"))
    assert not quiet.filter(record("prefect.flow_runs", "Finished in state Failed('Flow run "
                                   "encountered an exception: IntegrityError: x')"))
    assert quiet.filter(record("prefect.flow_runs", "Beginning flow run 'a' for flow 'b'"))
    assert quiet.filter(record("tasks.data.tables", "Loaded x.csv", None))
    boom = ValueError("unexpected")
    assert quiet.filter(record("prefect.task_runs", "Task run failed", boom))
