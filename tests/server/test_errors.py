"""The error tree: every code unique, snake_case, and documented in the README and errors.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from broker import docs, errors
from broker.cli.common import reports_errors
from broker.errors import BrokerError, all_error_classes, render_tree
from broker.store import StoreError
from broker.sts import trust_policy

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
    assert docs.render_readme(readme) == readme


def test_the_docstring_tree_is_drawn_from_the_classes() -> None:
    # After changing the tree: .venv/bin/python -m broker.docs
    assert docs.drawn_tree(ERRORS.read_text()) == render_tree()
    drawn = docs.drawn_tree(errors.__doc__ or "")
    for cls in all_error_classes():
        assert re.search(rf"\b{cls.__name__}\s+{cls.code}\s", drawn), cls.__name__


def test_a_docstring_without_its_tree_is_refused_not_rewritten_elsewhere() -> None:
    # A merge once emptied the tree; the generator then wrote it over BrokerError's class body.
    source = ERRORS.read_text()
    emptied = source.replace(docs.drawn_tree(source) + "\n", "", 1)
    with pytest.raises(ValueError, match="lacks the indented error tree"):
        docs.render_errors_module(emptied)


def test_the_tree_says_http_status_or_cli_exit_code_per_class() -> None:
    for cls in all_error_classes():
        assert cls.exit_code in (1, 2), cls.__name__
        if not cls.cli_only:
            assert 400 <= cls.status <= 599, cls.__name__


def test_config_and_trust_policy_errors_are_in_the_tree() -> None:
    assert issubclass(errors.ConfigError, BrokerError)
    assert (errors.ConfigError.code, errors.ConfigError.exit_code) == ("config_error", 2)
    with pytest.raises(errors.TrustPolicyInvalid) as refused:
        trust_policy.evaluate([], {}, host_path="oidc-test.example.com")
    assert isinstance(refused.value, errors.InputFileError)


def _raises(exc: Exception) -> Callable[..., None]:
    def command(as_json: bool) -> None:
        raise exc

    return command


@pytest.mark.parametrize(
    ("exc", "code", "exit_code", "message"),
    [
        (errors.ConfigError("port: bad"), "config_error", 2, "port: bad"),
        (PermissionError(13, "Permission denied"), "io_error", 1, "[Errno 13] Permission denied"),
        (
            StoreError("database is locked"),
            "io_error",
            1,
            "database error: database is locked",
        ),
        (errors.KeyNotFound("no key with kid 'x'"), "key_not_found", 1, "no key with kid 'x'"),
    ],
    ids=["ConfigError", "OSError", "StoreError", "tree class"],
)
def test_reports_errors_reports_every_failure_as_a_tree_class(
    exc: Exception, code: str, exit_code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as text:
        reports_errors(_raises(exc))(as_json=False)
    assert (text.value.code, capsys.readouterr().err) == (exit_code, f"error: {message}\n")
    with pytest.raises(SystemExit) as as_json:
        reports_errors(_raises(exc))(as_json=True)
    body = json.loads(capsys.readouterr().out)
    assert (as_json.value.code, body) == (exit_code, {"error": code, "message": message})
