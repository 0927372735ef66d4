"""docs/architecture.md is true of the tree: every module path it names exists, every module of
tasks/ is named in it, every stage package is described, and the stage order it states is the
direction the imports between stage packages run. The tree is read at test time, so a module
added later fails here until the page names it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(r"(?<![\w/.-])((?:tasks|flows|schemas|deployments|benchmarks|tests)/"
                  r"[\w/.-]*\.(?:py|yaml))")
BARE = re.compile(r"`([\w]+\.py)`")
ORDER = re.compile(r"^Stage order: (.+)$", re.M)


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def stage_packages() -> list[str]:
    return sorted(p.name for p in (ROOT / "tasks").iterdir()
                  if p.is_dir() and any(p.glob("*.py")))


def tasks_modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tasks").rglob("*.py")
                  if p.name != "__init__.py")


def stage_order() -> list[str]:
    found = ORDER.findall(doc())
    assert len(found) == 1, "architecture.md states the stage order on one 'Stage order:' line"
    return [name.strip() for name in found[0].split("<")]


def test_every_named_path_exists():
    """Check that each module or file path the page names (tasks/..., flows/..., tests/...)
    exists, and that each bare module name it cites is a module of the code."""
    named = set(PATH.findall(doc()))
    assert named, "the page names no module paths"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"architecture.md names paths that do not exist: {missing}"
    stems = {p.name for pkg in ("tasks", "flows", "schemas") for p in (ROOT / pkg).rglob("*.py")}
    unknown = sorted(set(BARE.findall(doc())) - stems)
    assert not unknown, f"architecture.md cites modules that do not exist: {unknown}"


def test_every_tasks_module_is_named():
    """Check that every module under tasks/ (``__init__.py`` aside) is named by its path."""
    named = set(PATH.findall(doc()))
    unnamed = [m for m in tasks_modules() if m not in named]
    assert not unnamed, f"modules of tasks/ that docs/architecture.md does not name: {unnamed}"


def test_every_stage_package_is_described_and_ordered():
    """Check that every stage package has its row in the page's table and its place in the
    stated stage order, and that the order names no package that does not exist."""
    text = doc()
    packages = stage_packages()
    undescribed = [p for p in packages if f"| `tasks/{p}/` |" not in text]
    assert not undescribed, f"stage packages without a row: {undescribed}"
    assert sorted(stage_order()) == packages, (stage_order(), packages)


def stage_imports() -> set[tuple[str, str, str]]:
    """(importing module, its stage, the stage it imports) for imports between stages."""
    arrows = set()
    for path in (ROOT / "tasks").rglob("*.py"):
        rel = path.relative_to(ROOT)
        if len(rel.parts) < 3:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and not node.level else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "tasks" and len(parts) > 1 and parts[1] != rel.parts[1]:
                    arrows.add((str(rel), rel.parts[1], parts[1]))
    return arrows


def test_stages_import_only_earlier_stages():
    """Check that a stage package imports only stages before it in the page's stage order."""
    rank = {name: i for i, name in enumerate(stage_order())}
    upward = sorted(f"{module} imports tasks.{target}" for module, source, target
                    in stage_imports() if rank.get(target, -1) >= rank.get(source, -1))
    assert not upward, f"imports against the stated stage order: {upward}"
