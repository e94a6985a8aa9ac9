"""The README's reference tables, generated from the code so they cannot drift.

``python -m broker.docs`` rewrites the marked sections of README.md; a test fails when the
committed README differs from what this renders.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic_core import PydanticUndefined

from broker.config import ENV_PREFIX, Settings
from broker.errors import all_error_classes

README = Path(__file__).resolve().parent.parent / "README.md"


def config_table() -> str:
    rows = ["| field | env | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "" if field.default is PydanticUndefined else field.default
        if default is None:
            shown = "(auto)"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        else:
            shown = f"`{default}`"
        env = f"`{ENV_PREFIX}{name.upper()}`"
        rows.append(f"| `{name}` | {env} | {shown} | {field.description or ''} |")
    return "\n".join(rows)


def error_table() -> str:
    rows = ["| code | HTTP | meaning |", "|---|---|---|"]
    for cls in all_error_classes():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        http = "CLI only (exit 1)" if cls.cli_only else cls.status
        rows.append(f"| `{cls.code}` | {http} | {summary} |")
    return "\n".join(rows)


SECTIONS = {"config-table": config_table, "error-table": error_table}


def render(text: str) -> str:
    for name, make in SECTIONS.items():
        start, end = f"<!-- {name} -->\n", f"<!-- /{name} -->"
        head, found_start, rest = text.partition(start)
        _, found_end, tail = rest.partition(end)
        if not (found_start and found_end):
            raise ValueError(f"README lacks the {start.strip()} ... {end} markers")
        text = f"{head}{start}{make()}\n{end}{tail}"
    return text


def main() -> None:
    README.write_text(render(README.read_text()))
    sys.stdout.write(f"updated {README}\n")


if __name__ == "__main__":
    main()
