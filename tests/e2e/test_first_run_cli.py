"""A first run of the `rareflow` console script as a new user runs it: a fresh home, no
RAREFLOW_* or PREFECT_* settings. The first `train` makes the signing key in
~/.config/rareflow (0600) and says so once; later commands find it; Prefect's database is in
~/.cache/rareflow/prefect, not ~/.prefect; no "View at" for the temporary server; the project
file works for `ingest` too; a project file pointing at a model that cannot judge another
table is refused before training; an error prints once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.registry.store import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RAREFLOW = str(Path(sys.executable).parent / "rareflow")
FAST = ["--model", "logreg", "--sampler", "none", "--class-weight", "balanced", "--folds", "3"]


def fresh_env(home: Path, **extra: str) -> dict:
    """The environment of a new user: no rareflow or Prefect settings, no XDG folders."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "RAREFLOW_", "XDG_"))}
    return {**env, "HOME": str(home), "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1", **extra}


def run(args: list[str], *, cwd: Path, env: dict, timeout: float = 300):
    return subprocess.run([RAREFLOW, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with a small table (a.csv) and the same table with a column renamed (b.csv)."""
    import pandas as pd
    from sklearn.datasets import make_classification

    base = tmp_path_factory.mktemp("first-run")
    X, y = make_classification(n_samples=2000, n_features=5, weights=[0.9], random_state=0)
    table = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)]).assign(y=y)
    table.to_csv(base / "a.csv", index=False)
    table.rename(columns={"f0": "amount"}).to_csv(base / "b.csv", index=False)
    return base


@pytest.fixture(scope="module")
def first_train(workspace):
    """The first `rareflow train` of a new user (no key, no Prefect settings)."""
    home = workspace / "home"
    done = run(["train", "--data", "a.csv", "--label", "y", "--registry", "reg", "--name", "m",
                *FAST], cwd=workspace, env=fresh_env(home))
    assert done.returncode == 0, done.stdout + done.stderr
    return home, done


def test_first_train_makes_a_private_key_and_says_so_once(workspace, first_train):
    """Check that the first train makes ~/.config/rareflow/signing.key (0600, folder 0700),
    says so in one line, and puts no key inside the registry."""
    home, done = first_train
    key = home / ".config" / "rareflow" / "signing.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert done.stdout.count(f"made one in {key}") == 1
    assert key.read_text().strip() not in done.stdout + done.stderr
    assert not list((workspace / "reg").rglob("*.key"))


def test_cli_runs_keep_prefect_in_rareflows_cache(first_train):
    """Check that a plain CLI run writes Prefect's database under ~/.cache/rareflow/prefect,
    not ~/.prefect, and prints no "View at" link to a server that stops with the command."""
    home, done = first_train
    assert (home / ".cache" / "rareflow" / "prefect" / "prefect.db").is_file()
    assert not (home / ".prefect" / "prefect.db").exists()
    assert "View at" not in done.stdout + done.stderr


def test_later_commands_and_python_find_the_key(workspace, first_train):
    """Check that score, models list and load_model from Python find the user's key with
    nothing exported."""
    home, _ = first_train
    env = fresh_env(home)
    scored = run(["score", "--data", "a.csv", "--out", "scored.csv", "--registry", "reg",
                  "--name", "m"], cwd=workspace, env=env)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    listed = run(["models", "list", "--registry", "reg", "--name", "m"], cwd=workspace, env=env)
    assert listed.returncode == 0 and "v0001" in listed.stdout, listed.stderr
    code = ("from tasks.serving.registered_model import load_model; "
            "print(load_model('reg', 'm').threshold)")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=workspace, env=env,
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr


def test_project_file_pointing_at_another_model_is_refused_first(workspace, first_train):
    """Check the demo-folder trap: a rareflow.yaml naming a model whose champion cannot score
    another table makes train say where the model came from, then refuse in seconds (exit 2,
    one line naming model, registry, file and --name), with nothing registered."""
    home, _ = first_train
    project = workspace / "rareflow.yaml"
    project.write_text("registry: reg\nname: m\n")
    try:
        started = time.monotonic()
        done = run(["train", "--data", "b.csv", "--label", "y", *FAST], cwd=workspace,
                   env=fresh_env(home))
        took = time.monotonic() - started
    finally:
        project.unlink()
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Model 'm' in registry 'reg' (from {project}" in done.stdout
    errors = [line for line in done.stderr.splitlines() if "cannot judge" in line]
    assert len(errors) == 1, done.stderr
    assert all(part in errors[0] for part in ("'m'", "'reg'", str(project), "--name NEW",
                                              "column 'f0'"))
    assert "Beginning flow run" not in done.stderr  # refused before any training
    assert Registry(workspace / "reg", "m").version_ids() == ["v0001"]
    assert took < 120


def test_ingest_takes_the_project_file_and_registry_variable(workspace, first_train):
    """Check that ingest runs where rareflow.yaml and RAREFLOW_REGISTRY are set (it used to
    exit 2: `registry: Extra inputs are not permitted`), for the project's model."""
    home, _ = first_train
    (workspace / "rareflow.yaml").write_text("registry: reg\nname: m\n")
    try:
        done = run(["ingest", "--data", "a.csv", "--source", "src"], cwd=workspace,
                   env=fresh_env(home, RAREFLOW_REGISTRY="reg"))
    finally:
        (workspace / "rareflow.yaml").unlink()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "for model m" in done.stdout


def test_a_missing_key_is_one_line_naming_the_nearby_key(workspace, first_train):
    """Check that a user without the key gets the error once (not once per Prefect log
    record), pointing at a key file near the registry that has the version's key id."""
    home, _ = first_train
    nearby = workspace / "rareflow-demo" / "signing.key"
    nearby.parent.mkdir(exist_ok=True)
    nearby.write_text((home / ".config" / "rareflow" / "signing.key").read_text())
    done = run(["score", "--data", "a.csv", "--out", "x.csv", "--registry", "reg", "--name",
                "m"], cwd=workspace, env=fresh_env(workspace / "other-user"))
    output = done.stdout + done.stderr
    assert done.returncode == 6, output
    assert output.count("no signing key is configured") == 1, output
    assert f"RAREFLOW_SIGNING_KEY_FILE={nearby}" in output


def test_a_users_prefect_api_url_is_left_alone(workspace, first_train):
    """Check that with PREFECT_API_URL set a command does not switch to rareflow's own
    Prefect home (no cache folder is made)."""
    home, _ = first_train
    other = workspace / "api-user"
    env = fresh_env(other, PREFECT_API_URL="http://127.0.0.1:9/api",
                    RAREFLOW_SIGNING_KEY_FILE=str(home / ".config" / "rareflow" / "signing.key"))
    done = run(["models", "list", "--registry", "reg", "--name", "m"], cwd=workspace, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (other / ".cache" / "rareflow").exists()
