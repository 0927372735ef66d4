"""The import graph of tasks/: modules, arrows, layers (the longest import chain) and circles.

Usage::

    python benchmarks/import_layers.py            # this checkout
    python benchmarks/import_layers.py PATH       # another checkout

Only imports of tasks modules count (an import of a package's ``__init__`` is not an arrow).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_graph(root: Path) -> dict[str, set[str]]:
    """Each module of tasks/ and the tasks modules it imports."""
    mods = {}
    for path in (root / "tasks").rglob("*.py"):
        if path.name != "__init__.py":
            mods[".".join(path.relative_to(root).with_suffix("").parts)] = path
    edges = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            edges[module] |= {n for n in names if n in mods and n != module}
    return edges


def longest_chain(edges: dict[str, set[str]]) -> tuple[list[str], set[str]]:
    """The longest import chain, and the modules seen on a circle."""
    memo, on_path, circle = {}, set(), set()

    def chain(m: str) -> list[str]:
        if m in memo:
            return memo[m]
        if m in on_path:
            circle.add(m)
            return []
        on_path.add(m)
        best = max((chain(t) for t in edges[m]), key=len, default=[])
        on_path.discard(m)
        memo[m] = [m, *best]
        return memo[m]

    longest = max((chain(m) for m in sorted(edges)), key=len)
    return longest, circle


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    edges = module_graph(root)
    longest, circle = longest_chain(edges)
    print(f"modules {len(edges)}  arrows {sum(map(len, edges.values()))}  "
          f"layers {len(longest)}  on a circle {sorted(circle) or 'none'}")
    print("longest chain: " + " -> ".join(m.removeprefix("tasks.") for m in longest))


if __name__ == "__main__":
    main()
