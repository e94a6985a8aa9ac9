"""The error tree: every code unique, snake_case, and documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

from broker.errors import all_error_classes

README = Path(__file__).parents[2] / "README.md"


def test_codes_are_unique_and_snake_case() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code), code


def test_every_code_is_in_the_readme_error_table() -> None:
    readme = README.read_text()
    missing = [c.code for c in all_error_classes() if f"| `{c.code}` |" not in readme]
    assert missing == []
