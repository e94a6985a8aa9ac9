"""The package layout holds: every package says what belongs in it, and no module import cycles.

The dependency arrows between packages are import-linter contracts (pyproject.toml, run by
`lint-imports` in .ci/run); this checks what they cannot: cycles between modules, lazy imports
inside functions included (`python -m pytest tests/test_layout.py`).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import grimp

import broker


def test_no_module_import_cycles() -> None:
    graph = grimp.build_graph("broker")
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join([module, *back]))
    assert cycles == []


def test_every_package_has_a_docstring_saying_what_belongs_there() -> None:
    for info in pkgutil.iter_modules(broker.__path__, "broker."):
        if info.ispkg:
            doc = importlib.import_module(info.name).__doc__ or ""
            assert len(doc.split()) >= 20, f"{info.name} needs a paragraph on what belongs there"


def test_no_public_module_level_name_means_two_things() -> None:
    # One name per concept: a public name defined at the top of two modules is two concepts
    # sharing a name (re-exports are imports, not definitions, and do not count).
    where: dict[str, list[str]] = {}
    for path in sorted(Path(broker.__path__[0]).rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in names:
                if not name.startswith("_") and name not in ("log", "__all__"):
                    where.setdefault(name, []).append(str(path.relative_to(broker.__path__[0])))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
