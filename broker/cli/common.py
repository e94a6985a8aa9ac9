"""Shared pieces of the CLI: options, error reporting, tables."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from broker.config import ConfigError
from broker.errors import BrokerError
from broker.store import StoreError

__all__ = ["config_option", "json_option", "reports_errors", "table", "when"]

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML config file (default: $BROKER_CONFIG, else built-in defaults).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def reports_errors(func: F) -> F:
    """Turn domain errors into one line on stderr (or JSON) and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc), "config_error", _json(kwargs), code=2)
        except BrokerError as exc:
            _fail(exc.message, exc.code, _json(kwargs), code=1)
        except OSError as exc:  # e.g. a data dir this user may not write, a port in use
            _fail(str(exc), "io_error", _json(kwargs), code=1)
        except StoreError as exc:  # e.g. a locked or damaged store
            _fail(f"database error: {exc}", "io_error", _json(kwargs), code=1)

    return wrapper  # type: ignore[return-value]


def _json(kwargs: dict[str, Any]) -> bool:
    return bool(kwargs.get("as_json", False))


def _fail(message: str, error: str, as_json: bool, *, code: int) -> None:
    if as_json:
        click.echo(json.dumps({"error": error, "message": message}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


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
