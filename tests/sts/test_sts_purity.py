"""broker.sts is pure AWS knowledge: it imports nothing of broker but itself and broker.errors."""

from __future__ import annotations

import ast
from pathlib import Path

import broker.sts

STS = Path(broker.sts.__file__).parent
ALLOWED = ("broker.sts", "broker.errors")


def _broker_imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # A relative import stays inside the package only from its top level.
            names.append(
                "broker.sts" if node.level == 1 else "." * node.level + (node.module or "")
            )
    return [n for n in names if n.startswith(("broker", "."))]


def test_sts_imports_nothing_of_broker_but_sts_and_errors() -> None:
    offending = {
        f"{path.name}: {name}"
        for path in sorted(STS.glob("*.py"))
        for name in _broker_imports(path)
        if name not in ALLOWED and not name.startswith(tuple(a + "." for a in ALLOWED))
    }
    assert set() == offending
