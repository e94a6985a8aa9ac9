"""The error tree: every code unique, snake_case, and documented in the README and errors.py."""

from __future__ import annotations

import re
from pathlib import Path

from broker import docs, errors
from broker.errors import all_error_classes, render_tree

README = Path(__file__).parents[2] / "README.md"
ERRORS = Path(errors.__file__)


def test_codes_are_unique_and_snake_case() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code), code


def test_every_code_is_in_the_readme_error_table() -> None:
    readme = README.read_text()
    missing = [c.code for c in all_error_classes() if f"| `{c.code}` |" not in readme]
    assert missing == []


def test_every_class_has_a_readme_row_with_its_http_status_and_exit_code() -> None:
    readme = README.read_text()
    for cls in all_error_classes():
        http = "(CLI only)" if cls.cli_only else str(cls.status)
        assert f"| `{cls.code}` | {http} | {cls.exit_code} |" in readme, cls.__name__


def test_the_readme_tables_are_what_the_code_renders() -> None:
    # After changing an error or a setting: .venv/bin/python -m broker.docs
    readme = README.read_text()
    assert docs.render(readme) == readme


def test_the_docstring_tree_is_drawn_from_the_classes() -> None:
    # After changing the tree: .venv/bin/python -m broker.docs
    assert docs.drawn_tree(ERRORS.read_text()) == render_tree()
    drawn = docs.drawn_tree(errors.__doc__ or "")
    for cls in all_error_classes():
        assert re.search(rf"\b{cls.__name__}\s+{cls.code}\s", drawn), cls.__name__


def test_the_tree_says_http_status_or_cli_exit_code_per_class() -> None:
    for cls in all_error_classes():
        assert cls.exit_code in (1, 2), cls.__name__
        if not cls.cli_only:
            assert 400 <= cls.status <= 599, cls.__name__
