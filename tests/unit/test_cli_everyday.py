"""Everyday command-line edges: defaults from the environment or rareflow.yaml, --version,
schema_model beside the config file, `models compare`, and report links that open from the UI."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_config import (
    build_config,
    project_defaults,
    remember_project,
    resolve_schema_model,
)
from flows.cli_errors import CliState
from schemas.config import TrainingConfig
from schemas.errors import ConfigError
from schemas.inference import load_schema_model
from schemas.scoring import ScoringConfig
from tasks.monitor.report_links import report_link_markdown, report_url, reports_base_url
from tasks.monitor.reports_server import make_server
from tasks.registry.signing import ALLOW_UNSIGNED_ENV

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "registry-0.1"
SCHEMA_MODULE = '''import pandera.pandas as pa


class TrainingData(pa.DataFrameModel):
    amount: float
    is_fraud: int
'''


def run(*args, env=None):
    return CliRunner().invoke(app, list(args), obj=CliState(), env=env)


def test_version_flag():
    """Check that `rareflow --version` prints the installed version and exits 0."""
    done = run("--version")
    assert done.exit_code == 0 and done.output.strip() == "rareflow 0.4.0"


def test_train_help_shows_defaults_and_required_markers():
    """Check that `train --help` marks the required options and shows the defaults."""
    done = run("train", "--help", env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    lines = {line.split()[1]: line for line in done.output.splitlines()
             if line.strip("│ ").startswith("--")}
    assert "required" in lines["--data"] and "required" in lines["--label"]
    assert "(default: 10.0)" in lines["--fn-cost"] and "(default: 5)" in lines["--folds"]


def test_project_defaults_precedence(tmp_path, monkeypatch):
    """Check that flags beat --config, which beats RAREFLOW_* variables, which beat
    rareflow.yaml, which beats the built-in defaults."""
    monkeypatch.chdir(tmp_path)
    assert project_defaults(env={}) == {}
    (tmp_path / "rareflow.yaml").write_text("registry: from_file\nname: filed\n")
    assert project_defaults(env={}) == {"registry": "from_file", "name": "filed"}
    monkeypatch.setenv("RAREFLOW_NAME", "from_env")
    cfg = build_config(ScoringConfig, None, {"data": "a.csv", "out": "b.csv"})
    assert (cfg.registry, cfg.name) == ("from_file", "from_env")
    config = tmp_path / "c.yaml"
    config.write_text("data: a.csv\nout: b.csv\nname: from_config\n")
    assert build_config(ScoringConfig, config, {}).name == "from_config"
    assert build_config(ScoringConfig, config, {"name": "flag"}).name == "flag"
    (tmp_path / "rareflow.yaml").write_text("registry: r\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"rareflow.yaml holds the project's defaults"):
        project_defaults(env={})


def test_models_commands_use_the_defaults(tmp_path, monkeypatch):
    """Check that `rareflow models show v0001` works with no flags once the registry and name
    come from the environment (and fails naming the registry without them)."""
    shutil.copytree(FIXTURE / "old", tmp_path / "registry" / "old")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ALLOW_UNSIGNED_ENV, "1")  # the 0.1 fixture predates signing
    assert run("models", "show", "v0001").exit_code == 6
    done = run("models", "show", "v0001", "--json",
               env={"RAREFLOW_REGISTRY": "registry", "RAREFLOW_NAME": "old"})
    assert done.exit_code == 0 and '"version": "v0001"' in done.output
    remember_project("registry", "old")
    assert run("models", "list").exit_code == 0
    assert "exists: left as it is" in remember_project("elsewhere", "x")


def test_models_compare(tmp_path):
    """Check that `models compare` shows versions side by side: strategy, threshold, metrics
    and gates, and refuses a single version (the 0.1 fixture is unsigned: compare verifies
    like `models show`, so it is signed first)."""
    shutil.copytree(FIXTURE / "old", tmp_path / "old")
    assert run("models", "sign", "--registry", str(tmp_path), "--name", "old").exit_code == 0
    done = run("models", "compare", "v0001", "v0003", "--registry", str(tmp_path),
               "--name", "old")
    assert done.exit_code == 0, done.output
    header, first_row = done.output.splitlines()[:2]
    assert "v0001" in header and "v0003" in header
    assert first_row.split()[0] == "champion", "no blank index-name line under the header"
    for row in ("strategy", "threshold", "test recall", "test normalised_cost", "status"):
        assert row in done.output
    single = run("models", "compare", "v0001", "--registry", str(tmp_path), "--name", "old")
    assert single.exit_code == 2 and "two or more versions" in single.output


def test_schema_model_beside_the_config_file(tmp_path, monkeypatch):
    """Check that schema_model 'my_schema:TrainingData' resolves to my_schema.py beside the
    config file, or in the working directory, without PYTHONPATH."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_schema.py").write_text(SCHEMA_MODULE)
    config = project / "train.yaml"
    config.write_text("data: d.csv\nlabel: is_fraud\nschema_model: my_schema:TrainingData\n")
    monkeypatch.chdir(tmp_path)
    cfg = build_config(TrainingConfig, config, {})
    assert cfg.schema_model == f"{project / 'my_schema.py'}:TrainingData"
    assert load_schema_model(cfg.schema_model).__name__ == "TrainingData"
    monkeypatch.chdir(project)
    assert load_schema_model("my_schema:TrainingData").__name__ == "TrainingData"
    assert resolve_schema_model("json:JSONDecoder", config) == "json:JSONDecoder"
    with pytest.raises(ConfigError, match="cannot import schema_model 'nowhere:X'"):
        load_schema_model("nowhere:X")


def test_report_links_use_the_reports_server(tmp_path):
    """Check that a report's link is an http URL on the reports server when one is set, and
    a path with instructions (never a file:// link) when not."""
    report = tmp_path / "fraud" / "versions" / "v0002" / "reports" / "monitor-x" / "q.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html><title>evidently</title></html>")
    base = reports_base_url({"RAREFLOW_REPORTS_URL": "http://127.0.0.1:8765/"})
    url = report_url(report, base=base)
    assert url == "http://127.0.0.1:8765/fraud/versions/v0002/reports/monitor-x/q.html"
    text = report_link_markdown({"quality_html": str(report)}, base=None)
    assert "file://" not in text and "rareflow reports serve" in text
    assert reports_base_url({}) is None
    with pytest.raises(ConfigError, match="http"):
        reports_base_url({"RAREFLOW_REPORTS_URL": "file:///tmp"})
    server = make_server(tmp_path, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        served = report_url(report, base=f"http://127.0.0.1:{server.server_port}")
        assert "evidently" in httpx.get(served, timeout=10).text
    finally:
        server.shutdown()
        server.server_close()
