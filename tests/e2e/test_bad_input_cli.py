"""The bad-input corpus through the `rareflow` command line.

A good tiny model is trained and promoted first; then every case in tests/badinput/corpus.py
runs against that registry and must end with a one-line error naming the problem, its
documented exit status, no traceback, no new version, and champion.json, history.jsonl and
the version folders unchanged byte for byte. Flows run against the package's real Prefect
server (``prefect_server`` in tests/e2e/conftest.py). Most cases run in-process through
typer's CliRunner; the cases tagged ``subprocess`` also run as the real console script, and
one runs CI-like with a fresh PREFECT_HOME and its own temporary server.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REGISTRY
from tasks.data.tables import load_table
from tasks.registry.store import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "demo"
CORPUS_FILE = Path(__file__).resolve().parents[1] / "badinput" / "corpus.py"


def _load_corpus():
    spec = importlib.util.spec_from_file_location("rareflow_badinput_corpus", CORPUS_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


corpus = _load_corpus()
SUBPROCESS_CASES = [c for c in corpus.CASES if "subprocess" in c.tags]
DOCUMENTED_EXITS = {EXIT_OK, EXIT_BAD_INPUT, EXIT_REGISTRY}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under the model's registry folder with its sha256 (the lock file aside)."""
    out = {}
    for path in sorted((root / NAME).rglob("*")):
        if path.is_file() and path.name != ".lock":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def champion_registry(prefect_server, tmp_path_factory):
    """A registry whose champion is one good tiny logistic-regression model (v0001)."""
    from tasks.data.demo_tables import make_demo_data

    root = tmp_path_factory.mktemp("badinput")
    data = root / "good.csv"
    make_demo_data(2000, positive_rate=0.05, seed=1).to_csv(data, index=False)
    registry = root / "registry"
    result = CliRunner().invoke(app, ["train", "--data", str(data), *corpus.TRAIN_FLAGS,
                                      "--registry", str(registry), "--name", NAME])
    assert result.exit_code == EXIT_OK, result.output + result.stderr
    reg = Registry(registry, NAME)
    assert reg.champion()["version"] == "v0001"
    return registry


@pytest.fixture(scope="module")
def base_frame():
    return corpus.base_frame()


def case_args(case, base, folder: Path, registry: Path) -> list[str]:
    """Write the case's file into ``folder`` and return its command line."""
    path = corpus.write_case(case, base, folder)
    values = {"data": str(path), "out": str(folder / "scored.csv"), "registry": str(registry),
              "name": NAME, "dir": str(folder)}
    return [case.command, *(a.format(**values) for a in case.args)]


def check_outcome(case, exit_code: int, stdout: str, stderr: str) -> None:
    """The exit status, the final one-line message and the absence of a traceback."""
    assert exit_code in DOCUMENTED_EXITS
    assert exit_code == case.exit_code, f"{case.id}: exit {exit_code}\n{stdout}\n{stderr}"
    assert "Traceback" not in stdout + stderr, f"{case.id} printed a traceback:\n{stderr}"
    if case.exit_code == EXIT_OK:
        assert re.search(case.message, stdout, re.I), stdout
        return
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, f"{case.id}: nothing on stderr"
    last = lines[-1]
    assert last.startswith("error: "), f"{case.id}: last line is {last!r}"
    assert re.search(case.message, last, re.I), f"{case.id}: {last!r}"


@pytest.mark.parametrize("case", corpus.CASES, ids=lambda c: c.id)
def test_bad_input_in_process(case, champion_registry, base_frame, tmp_path):
    """Check that a bad input ends in one clear line and its exit status, registry untouched."""
    before = snapshot(champion_registry)
    args = case_args(case, base_frame, tmp_path / case.id, champion_registry)
    result = CliRunner().invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    check_outcome(case, result.exit_code, result.stdout, result.stderr)
    assert snapshot(champion_registry) == before, f"{case.id} changed the registry"
    assert Registry(champion_registry, NAME).version_ids() == ["v0001"]
    if case.exit_code == EXIT_OK:
        batch = load_table(Path(args[args.index("--data") + 1]))
        scored = load_table(tmp_path / case.id / "scored.csv")
        assert len(scored) == len(batch)
        assert list(scored.columns) == [*batch.columns, "score", "decision"]
        assert scored["score"].between(0, 1).all() and scored["decision"].isin([0, 1]).all()


def test_debug_flag_shows_the_traceback(champion_registry, base_frame, tmp_path):
    """Check that --debug lets the error through with its traceback instead of one line."""
    from schemas.errors import DataError

    case = next(c for c in corpus.CASES if c.id == "missing-path")
    args = case_args(case, base_frame, tmp_path, champion_registry)
    result = CliRunner().invoke(app, ["--debug", *args])
    assert isinstance(result.exception, DataError)
    assert "does not exist" in str(result.exception)
    assert result.exc_info[2] is not None  # a traceback to print


def test_corpus_covers_the_issue():
    """Check that the corpus holds at least 25 cases, every one with a documented exit."""
    assert len(corpus.CASES) >= 25
    assert len({c.id for c in corpus.CASES}) == len(corpus.CASES)
    assert {c.exit_code for c in corpus.CASES} <= DOCUMENTED_EXITS


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("rareflow")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from flows.cli import main; main()"]


def _cli_env(tmp_path: Path, *, api_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
                "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda c: c.id)
def test_bad_input_console_script(case, prefect_server, champion_registry, base_frame,
                                  tmp_path):
    """Check that the real console script prints no traceback, one line and the exit status."""
    before = snapshot(champion_registry)
    args = case_args(case, base_frame, tmp_path / case.id, champion_registry)
    proc = subprocess.run([*_console_script(), *args], capture_output=True, text=True,
                          env=_cli_env(tmp_path, api_url=prefect_server.api_url),
                          timeout=300)
    check_outcome(case, proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(champion_registry) == before


def test_bad_input_ci_like_own_server(champion_registry, base_frame, tmp_path):
    """Check that a bad input fails cleanly under a fresh PREFECT_HOME and its own server."""
    case = next(c for c in corpus.CASES if c.id == "non-utf8")
    before = snapshot(champion_registry)
    args = case_args(case, base_frame, tmp_path / case.id, champion_registry)
    proc = subprocess.run([*_console_script(), *args], capture_output=True, text=True,
                          env=_cli_env(tmp_path, api_url=None), timeout=300)
    check_outcome(case, proc.returncode, proc.stdout, proc.stderr)
    assert snapshot(champion_registry) == before
    shutil.rmtree(tmp_path / "prefect-home", ignore_errors=True)
