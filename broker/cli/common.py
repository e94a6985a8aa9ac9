"""Shared pieces of the CLI: options, error reporting, tables."""

from __future__ import annotations

import functools
import json
import ssl
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from broker.config import Settings, load_settings
from broker.errors import BrokerError, InputFileError, LocalIoError
from broker.store import StoreError

__all__ = [
    "OneLineUsage",
    "OneLineUsageGroup",
    "config_option",
    "input_file",
    "json_option",
    "load_config",
    "read_ca_file",
    "read_json_file",
    "read_text_file",
    "reports_errors",
    "resource_option",
    "table",
    "tree_error",
    "when",
]

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML config file (default: $BROKER_CONFIG, else built-in defaults).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
resource_option = click.option(
    "--resource",
    "resource_name",
    metavar="NAME",
    help="The [[resources]] table to use (needed when several are configured).",
)


def load_config(config_file: Path | None, **overrides: Any) -> Settings:
    """The settings a command runs with; notes about deprecated keys go to stderr."""
    settings = load_settings(config_file, **overrides)
    for note in settings.deprecations:
        click.echo(f"warning: {note}", err=True)
    return settings


class OneLineUsage(click.Command):
    """A command whose usage errors (unknown option, bad value, a bad combination its body finds)
    are one line and exit 2, like every other failure, instead of click's usage block: scripts
    read one line."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _usage_line(exc, info_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            _usage_line(exc, ctx.command_path)


class OneLineUsageGroup(click.Group):
    """A group whose commands and subgroups, defined with its decorators, are one-line too."""

    command_class = OneLineUsage
    group_class = type  # subgroups are of this class as well


def _usage_line(exc: click.UsageError, where: str | None) -> NoReturn:
    where = exc.ctx.command_path if exc.ctx else where
    click.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
    sys.exit(exc.exit_code)


def reports_errors(func: F) -> F:
    """Turn a failure into one line on stderr (or its JSON body) and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            error = tree_error(exc)
            if error is None:  # click's own usage errors, and bugs: not ours to reword
                raise
            _fail(error, as_json=bool(kwargs.get("as_json", False)))

    return wrapper  # type: ignore[return-value]


def tree_error(exc: Exception) -> BrokerError | None:
    """The error-tree class a command reports ``exc`` as; None for anything else.

    The failures that come from below the broker's own code are wrapped here, at the CLI's
    boundary, and only here: OSError (a data dir this user may not write, a port in use) and
    StoreError (a locked or damaged store) become LocalIoError, code io_error.
    """
    if isinstance(exc, BrokerError):
        return exc
    if isinstance(exc, OSError):
        return LocalIoError(str(exc))
    if isinstance(exc, StoreError):
        return LocalIoError(f"database error: {exc}")
    return None


def _fail(error: BrokerError, *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(error.body()))
    else:
        click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_code)


# Files named by options are read here, so every unusable one is one InputFileError (exit 2).
# Their options take a plain click.Path: click's own exists/dir checks would answer in its
# multi-line usage format instead.
input_file = click.Path(path_type=Path)


def read_text_file(path: Path, option: str, *, encoding: str = "utf-8") -> str:
    """The stripped text of the file; InputFileError naming the option when it cannot be read."""
    try:
        return path.read_text(encoding=encoding).strip()
    except OSError as exc:  # missing, a directory, not readable by this user
        raise InputFileError(f"{option} {str(path)!r} cannot be read: {exc}") from None
    except UnicodeDecodeError as exc:
        what = "an ASCII" if encoding == "ascii" else "a UTF-8"
        raise InputFileError(f"{option} {str(path)!r} is not {what} text file: {exc}") from None


def read_json_file(path: Path, option: str) -> Any:
    text = read_text_file(path, option)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: deep nesting
        raise InputFileError(f"{option} {str(path)!r} is not a JSON file: {exc}") from None


def read_ca_file(path: Path, option: str) -> ssl.SSLContext:
    """A default TLS context that also trusts the CA certificates in the file."""
    try:
        return ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise InputFileError(f"{option} {str(path)!r} is not a PEM CA certificate: {exc}") from None


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def when(ts: int | None) -> str:
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # beyond datetime (year 1..9999): show it raw
        return str(ts)
