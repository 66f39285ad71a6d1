"""The package has no import loops, counting imports made only for type checking.

A loop means two modules each need the other to be understood; the bench's system registry is
the one place allowed to import lazily inside functions (not counted: only module-level imports
and `if TYPE_CHECKING:` blocks are read)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "voice_pipeline"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    found: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name in modules and name != module}


def import_loops() -> list[list[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports(path, name, set(paths)) for name, path in paths.items()}
    loops, seen = [], set()
    for start in graph:  # every cycle through `start`, found by walking the graph from it
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycle = frozenset(path)
                    if cycle not in seen:
                        seen.add(cycle)
                        loops.append(path)
                elif nxt not in path and len(path) < 8:
                    stack.append((nxt, path + [nxt]))
    return loops


def test_no_import_loops():
    assert import_loops() == []


def test_the_checker_sees_a_loop_hidden_behind_type_checking(tmp_path, monkeypatch):
    package = tmp_path / "voice_pipeline"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (package / "b.py").write_text("from .a import A\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert sorted(map(sorted, import_loops())) == [["voice_pipeline.a", "voice_pipeline.b"]]
