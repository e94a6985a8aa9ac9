"""The README's reference tables and the error tree, generated from the code so they cannot drift.

``python -m broker.docs`` rewrites the marked sections of README.md and the tree drawn in the
broker/errors.py docstring; a test fails when either committed file differs from what this renders.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from broker import errors
from broker.config import ENV_PREFIX, Settings
from broker.errors import all_error_classes, render_tree

README = Path(__file__).resolve().parent.parent / "README.md"
ERRORS = Path(errors.__file__).resolve()
# The tree in the errors.py docstring: the first run of indented lines after a blank line.
# The tree opens with its root's row, so no other indented block (a class body) can match.
_TREE = re.compile(r"(?<=\n\n)    BrokerError .*\n(?:    \S.*\n)*(?=\n)")


def config_table() -> str:
    rows = ["| field | env | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        default = "" if default is PydanticUndefined else default
        if default is None:
            shown = "(auto)"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif isinstance(default, list):  # as TOML (and a BROKER_* variable's JSON) spell it
            shown = f"`{json.dumps(default)}`"
        else:
            shown = f"`{default}`"
        env = f"`{ENV_PREFIX}{name.upper()}`"
        rows.append(f"| `{name}` | {env} | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def error_table() -> str:
    rows = ["| code | HTTP status | CLI exit | meaning |", "|---|---|---|---|"]
    for cls in all_error_classes():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        http = "(CLI only)" if cls.cli_only else cls.status
        rows.append(f"| `{cls.code}` | {http} | {cls.exit_code} | {summary} |")
    return "\n".join(rows)


def drawn_tree(source: str) -> str:
    """The tree as drawn in the errors.py source (its docstring), without the final newline."""
    found = _TREE.search(source)
    if found is None:
        raise ValueError(f"{ERRORS} lacks the indented error tree in its docstring")
    return found.group(0).removesuffix("\n")


def render_errors_module(source: str) -> str:
    """errors.py with its docstring tree replaced by the one the classes draw."""
    drawn_tree(source)  # raises when the tree is missing
    return _TREE.sub(lambda _: render_tree() + "\n", source, count=1)


SECTIONS = {"config-table": config_table, "error-table": error_table}


def render_readme(text: str) -> str:
    for name, make in SECTIONS.items():
        start, end = f"<!-- {name} -->\n", f"<!-- /{name} -->"
        head, found_start, rest = text.partition(start)
        _, found_end, tail = rest.partition(end)
        if not (found_start and found_end):
            raise ValueError(f"README lacks the {start.strip()} ... {end} markers")
        text = f"{head}{start}{make()}\n{end}{tail}"
    return text


def update_files() -> None:
    README.write_text(render_readme(README.read_text()))
    ERRORS.write_text(render_errors_module(ERRORS.read_text()))
    sys.stdout.write(f"updated {README} and {ERRORS}\n")


if __name__ == "__main__":
    update_files()
