"""The README and the docs/ pages stay true: the README is short and keeps its two commands
(CI runs the second, then builds the site), every `rareflow ...` command a page shows parses
against the command line as it is, every config file shown validates, every repository path a
page cites exists, every link of the README resolves, and the site builds with --strict."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.doc_blocks import blocks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
DEMO = "python -m pip install uv && python -m uv sync --frozen && python -m uv run rareflow demo"
TESTS = ("python -m pip install uv && python -m uv sync --frozen --extra dev && "
         "python -m uv run pytest")
TOP = ("tasks", "flows", "schemas", "benchmarks", "tests", "docs", ".ci")  # not deployments/:
# docs/production.md names the folders `rareflow deploy init` writes there
REPO_PATH = re.compile(r"`((?:{})/[\w./-]*[\w/])`".format("|".join(re.escape(t) for t in TOP)))
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for every `rareflow ...` line of a bash block, continuations joined."""
    found = []
    for path in [README, *PAGES]:
        for body in blocks(path, "bash", "sh"):
            for line in body.replace("\\\n", " ").splitlines():
                if line.strip().startswith("rareflow "):
                    found.append((path.name, line.strip()))
    return found


def test_readme_is_short_and_keeps_its_two_commands():
    """Check that the README is at most 250 lines and shows the quickstart commands exactly."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    lines = [line.strip() for line in text.splitlines()]
    assert DEMO in lines and TESTS in lines


def test_ci_runs_the_readme_test_command_then_builds_the_site():
    """Check that .ci/run calls the README's test command exactly, and builds the docs site
    strictly after installing."""
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TESTS in lines
    build = [i for i, line in enumerate(lines) if "mkdocs build --strict" in line]
    assert build and build[0] > lines.index(TESTS)


def parse_command(line: str) -> None:
    """Parse a `rareflow ...` line with the real command line, without running it: an unknown
    command or option, or a bad value, raises."""
    import typer.main

    from flows.cli import app

    command, name = typer.main.get_command(app), "rareflow"
    args = shlex.split(line, comments=True)[1:]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command {name!r} in {line!r}"
        command = command.commands[name]
    command.make_context(name, list(args))


def test_every_command_shown_parses():
    """Check that every `rareflow ...` command the README and docs/ pages show in a bash block
    names a real command, real options and valid values."""
    commands = shown_commands()
    assert {page for page, _ in commands} >= {"README.md", "monitoring.md", "costs.md"}
    failed = []
    for page, line in commands:
        try:
            parse_command(line)
        except Exception as exc:  # click's usage errors, from typer's own copy of click
            failed.append(f"{page}: {line}: {exc}")
    assert not failed, failed


@pytest.mark.parametrize("line", ["rareflow train --data x.csv --label y --no-such-flag 1",
                                  "rareflow models nope",
                                  "rareflow train --data x.csv --label y --fn-cost cheap"])
def test_a_wrong_command_fails_to_parse(line):
    """Check that the parse above would catch an unknown option or command, or a bad value."""
    with pytest.raises((Exception, AssertionError)):
        parse_command(line)


def test_config_files_shown_validate():
    """Check that the training config file docs/command-line.md shows is a valid
    TrainingConfig (unknown keys are refused by the model)."""
    from schemas.config import TrainingConfig

    shown = blocks(ROOT / "docs" / "command-line.md", "yaml")
    assert shown
    for body in shown:
        TrainingConfig.model_validate(yaml.safe_load(body))


def test_cited_repository_paths_exist():
    """Check that each repository path the README and pages cite in backticks (results files,
    modules, tests) exists, so a figure always points at the file that holds it."""
    missing = []
    for path in [README, *PAGES]:
        for cited in REPO_PATH.findall(path.read_text(encoding="utf-8")):
            if "<" not in cited and "*" not in cited and not (ROOT / cited).exists():
                missing.append(f"{path.name}: {cited}")
    assert not missing, missing


def test_readme_links_resolve():
    """Check that every relative link and image of the README points at a file that exists
    (mkdocs checks the pages' own links)."""
    targets = [t for t in LINK.findall(README.read_text(encoding="utf-8"))
               if "://" not in t]
    assert any(t.startswith("docs/") for t in targets)
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing


def test_site_builds_strictly(tmp_path):
    """Check that `mkdocs build --strict` passes: every page in the nav, no broken link or
    anchor."""
    pytest.importorskip("mkdocs")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
