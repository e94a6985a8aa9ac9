"""The package layout holds: every package says what belongs in it, and no module import cycles.

The dependency arrows between packages are import-linter contracts (pyproject.toml, run by
`lint-imports` in .ci/run); this checks what they cannot: cycles between modules, lazy imports
inside functions included (`python -m pytest tests/test_layout.py`).
"""

from __future__ import annotations

import importlib
import pkgutil

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
