"""The house rules of docs/architecture.md, measured on the code so that they keep holding.

- no product module over 450 lines, no function over 60, no flow function over 50;
- imports run one way: flows -> tasks -> schemas (deployments and benchmarks on top);
- inside tasks/, no import circle and at most 10 import layers (``benchmarks/import_layers.py``);
- only the private modules of tasks/ (``tasks/<stage>/_*.py``) touch a library's private names,
  each with ``CHECKED_AGAINST`` and upgrade tests in test_library_internals.py;
- names have one source: the config schema's lists are the ones the other modules use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "tasks", "schemas")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
MAX_FLOW_LINES = 50
OWN = {"flows", "tasks", "schemas", "deployments", "benchmarks", "tests"}
LAYER = {"schemas": 0, "tasks": 1, "flows": 2}
MAX_TASKS_LAYERS = 10  # issue 26 brought them from 13 to 10: a longer chain needs a reason


def product_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def shortcut_modules() -> list[Path]:
    """The private modules of tasks/: the only places a library's internals may be used."""
    return sorted(p for p in (ROOT / "tasks").glob("*/_*.py") if p.name != "__init__.py")


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def is_flow(node: ast.FunctionDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(target, ast.Name) and target.id == "flow":
            return True
    return False


def test_modules_stay_small():
    """Check that no module of flows/, tasks/ or schemas/ is over 450 lines."""
    long = {str(p.relative_to(ROOT)): n for p in product_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_functions_stay_short():
    """Check that no function is over 60 lines and no flow function over 50 (decorators and
    docstrings included)."""
    long = []
    for path in product_files():
        for node in functions(parsed(path)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = node.end_lineno - first + 1
            limit = MAX_FLOW_LINES if is_flow(node) else MAX_FUNCTION_LINES
            if lines > limit:
                long.append(f"{path.relative_to(ROOT)}:{node.name} {lines} > {limit}")
    assert not long, long


def imported_modules(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, [alias.name]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node, node.module, [a.name for a in node.names]


def test_imports_run_one_way():
    """Check that schemas import neither tasks nor flows, and tasks never import flows."""
    wrong = []
    for path in product_files():
        here = LAYER[path.relative_to(ROOT).parts[0]]
        for node, module, _ in imported_modules(parsed(path)):
            top = module.split(".")[0]
            if top in LAYER and LAYER[top] > here:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert not wrong, wrong


def test_tasks_import_graph_is_shallow_and_has_no_circle():
    """Check that tasks/ modules import each other without a circle and through at most
    MAX_TASKS_LAYERS layers (the longest import chain, as benchmarks/import_layers.py counts)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "import_layers", ROOT / "benchmarks" / "import_layers.py")
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    longest, circle = layers.longest_chain(layers.module_graph(ROOT))
    assert not circle, f"tasks/ modules import each other in a circle: {sorted(circle)}"
    assert len(longest) <= MAX_TASKS_LAYERS, (
        f"{len(longest)} import layers in tasks/: " + " -> ".join(longest))


def private_uses(path: Path) -> list[str]:
    """Private names of other libraries a module reaches for: imports and attributes."""
    found = []
    tree = parsed(path)
    for node, module, names in imported_modules(tree):
        if module.split(".")[0] in OWN:
            continue
        hidden = [part for part in module.split(".")
                  if part.startswith("_") and not part.startswith("__")]
        hidden += [n for n in names if n.startswith("_") and not n.startswith("__")]
        if hidden or module.split(".")[0] == "ctypes":
            found.append(f"{node.lineno}: import {module} {names}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name, owner = node.attr, node.value
            own_object = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
            private = name.startswith("_") and not name.startswith("__")
            if (private and not own_object) or name.startswith("__pydantic"):
                found.append(f"{node.lineno}: .{name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith("__pydantic"):
            found.append(f"{node.lineno}: {node.value!r}")
    return found


def test_only_private_modules_touch_library_internals():
    """Check that private modules, names and attributes of libraries appear only in the
    private modules of tasks/ (where each has its reason and an upgrade test)."""
    shortcuts = shortcut_modules()
    offenders = {str(p.relative_to(ROOT)): uses for p in product_files()
                 if p not in shortcuts and (uses := private_uses(p))}
    assert not offenders, offenders
    upgrade_tests = (ROOT / "tests" / "unit" / "test_library_internals.py").read_text()
    for path in shortcuts:
        text = path.read_text()
        assert "Relies on" in text, f"{path.name} does not say what it relies on"
        assert "CHECKED_AGAINST" in text, f"{path.name} does not say what it was checked against"
        assert path.stem in upgrade_tests, f"{path.name} has no upgrade test"


@pytest.mark.parametrize("source, text", [
    ("import sklearn.tree._tree as t", "sklearn.tree._tree"),
    ("from pydantic import _internal", "_internal"),
    ("x = model._preprocess_X", "._preprocess_X"),
    ("s = {'__pydantic_fields_set__': 1}", "__pydantic_fields_set__"),
    ("import ctypes", "ctypes"),
])
def test_the_internals_check_catches_shortcuts(tmp_path, source, text):
    """Check that the check above would see each kind of shortcut."""
    path = tmp_path / "probe.py"
    path.write_text(source + "\n")
    assert any(text in use for use in private_uses(path))


def test_names_have_one_source():
    """Check that the sampler and model lists are the config schema's own objects."""
    from schemas import config
    from tasks.search import pipeline, samplers

    assert samplers.SAMPLERS is config.SAMPLERS
    assert pipeline.MODELS is config.MODELS
    assert "auto" not in config.MODELS and "auto" not in config.SAMPLERS


def test_no_comment_cites_a_missing_design_file():
    """Check that the code points to docs in the repository, not to a DESIGN.md outside it."""
    cited = [str(p.relative_to(ROOT)) for p in product_files()
             if "DESIGN.md" in p.read_text(encoding="utf-8")]
    assert not cited, cited
    assert (ROOT / "docs" / "architecture.md").is_file()
