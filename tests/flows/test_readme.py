"""The README's code runs as written: every ```python block, and the `rareflow models ...`
commands shown after the demo, in a folder laid out as `rareflow demo` leaves it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests import doc_blocks

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks(language: str) -> list[str]:
    return doc_blocks.blocks(README, language)


@pytest.fixture(scope="module")
def demo_folder(prefect_harness, tmp_path_factory):
    """What `rareflow demo` leaves: rareflow-demo/ with two versions of `demo`, a labelled
    batch of its last weeks, and rareflow.yaml (small data and a fast strategy)."""
    from flows.cli_config import remember_project
    from flows.training import training_flow
    from schemas.config import SplitConfig, StrategyConfig, TrainingConfig
    from tasks.data.demo_tables import make_demo_data
    from tasks.data.tables import write_table
    from tasks.runtime.run_outcome import run_summary

    base = tmp_path_factory.mktemp("readme")
    demo = base / "rareflow-demo"
    strategy = StrategyConfig(model="hgb", sampler="none", class_weight="balanced")
    for key, seed in (("train", 0), ("retrain", 1)):  # the demo's table size: the bound
        data = write_table(make_demo_data(20_000, seed=seed), demo / f"{key}.parquet")  # gates
        result = run_summary(training_flow(TrainingConfig(
            data=str(data), label="is_fraud", positive="1", registry=str(demo / "registry"),
            name="demo", split=SplitConfig(n_folds=3), strategy=strategy), return_state=True))
        assert key == "retrain" or result["promoted"], result["verdict"]
    # the demo's last landed weeks, after the drift: a labelled batch the README scores
    write_table(make_demo_data(4000, seed=2, drift=True), demo / "incoming" /
                "weeks-09-10.parquet")
    remember_project("rareflow-demo/registry", "demo", cwd=base)
    return base


def test_python_blocks_run(demo_folder, monkeypatch, capsys):
    """Check that every Python block of the README runs as written after the demo."""
    monkeypatch.chdir(demo_folder)
    found = blocks("python")
    assert any("load_model" in b for b in found), "the README lost its Python example"
    for body in found:
        if "emit_event" in body:  # needs a server that is not part of this test
            continue
        exec(compile(body, str(README), "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "1 - normalised cost:" in out and "precision" in out


def test_python_snippet_runs_as_printed_with_the_users_key(demo_folder, tmp_path):
    """Check that the README's `load_model` block runs as printed in a new process with no
    key exported: it finds the key `rareflow demo` keeps in the user's config folder (here
    the key the fixture's versions were signed with, where a first demo writes it)."""
    key_file = tmp_path / "config" / "rareflow" / "signing.key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text(os.environ["RAREFLOW_SIGNING_KEY"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAREFLOW_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    body = next(b for b in blocks("python") if "load_model" in b)
    done = subprocess.run([sys.executable, "-c", body], cwd=demo_folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 - normalised cost:" in done.stdout


def test_models_commands_run_as_written(demo_folder, monkeypatch):
    """Check that the README's `rareflow models ...` lines work after the demo, with no
    --registry or --name (the demo's rareflow.yaml gives them)."""
    from flows.cli import app
    from flows.cli_errors import CliState

    monkeypatch.chdir(demo_folder)
    commands = [line.split("#")[0].strip() for body in blocks("bash")
                for line in body.splitlines() if line.startswith("rareflow models ")]
    assert "rareflow models show v0001" in commands
    for command in commands:
        done = CliRunner().invoke(app, shlex.split(command)[1:], obj=CliState())
        assert done.exit_code == 0, (command, done.output)


def own_table(n: int, seed: int, *, label: bool = True):
    """A customer table like the README's: numeric and categorical columns, 'yes'/'no' churn."""
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=n, n_features=6, n_informative=4, weights=[0.9],
                               class_sep=1.5, random_state=seed)
    df = pd.DataFrame(X, columns=[f"usage_{i}" for i in range(6)])
    df["plan"] = pd.Series(["basic", "plus", "pro"]).sample(n, replace=True,
                                                            random_state=seed).to_numpy()
    if label:
        df["churned"] = pd.Series(y).map({1: "yes", 0: "no"})
    return df


def test_own_table_commands_run_as_written(prefect_harness, tmp_path, monkeypatch):
    """Check that the README's three commands for your own table (train, score, monitor) run
    as written on such a table: trained and promoted, scored, and monitored to a verdict."""
    from flows.cli import app
    from flows.cli_errors import CliState

    monkeypatch.chdir(tmp_path)
    own_table(3000, 0).to_csv("customers.csv", index=False)
    own_table(500, 1, label=False).to_csv("new_customers.csv", index=False)
    own_table(2000, 2).to_csv("labelled_customers.csv", index=False)
    block = next(b for b in blocks("bash") if "--data customers.csv" in b)
    commands = [line for line in block.splitlines() if line.startswith("rareflow ")]
    assert [c.split()[1] for c in commands] == ["train", "score", "monitor"]
    for command, allowed in zip(commands, ({0}, {0}, {0, 4}), strict=True):  # 4: a verdict
        done = CliRunner().invoke(app, shlex.split(command)[1:], obj=CliState())
        assert done.exit_code in allowed, (command, done.output)
    assert (tmp_path / "scored.parquet").is_file()
