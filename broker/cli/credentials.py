"""``test-broker credentials`` and ``audit``: manage CI bearers and personal secrets, read the audit."""

from __future__ import annotations

import json
import re
import time
from contextlib import closing, suppress
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from broker.callers import credentials
from broker.cli.common import (
    OneLineUsage,
    OneLineUsageGroup,
    config_option,
    json_option,
    load_config,
    reports_errors,
    table,
    when,
)
from broker.config import MAX_ROTATION_GRACE, MIN_TOKEN_TTL, Settings
from broker.errors import ConfigError, InvalidRequest
from broker.store import AuditRecord, Store, exists, open_store
from broker.sts.tags import MAX_TAG_VALUE, TAG_PUNCTUATION, plain_tag_key_ok, tag_value_ok


def _open(settings: Settings, *, create: bool = False) -> Store:
    from broker.store.files import private_dir

    if not create and not exists(settings.data_dir):
        # A wrong --config would otherwise quietly create and read an empty store.
        raise ConfigError(
            f"no broker database in {str(settings.data_dir)!r}: check --config / "
            "BROKER_DATA_DIR (`credentials add` or `serve` creates it)"
        )
    private_dir(settings.data_dir)
    return open_store(settings.data_dir)


def _show(info: credentials.CredentialInfo, secret: str | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(asdict(info) | ({"secret": secret} if secret else {}), indent=2))
        return
    click.echo(_table([info]))
    if secret:
        click.echo("\nsecret (shown once, store it now):", err=True)
        click.echo(secret)


def _table(infos: list[credentials.CredentialInfo]) -> str:
    rows = [
        (
            i.id,
            i.kind,
            i.name,
            i.scope_pattern,
            i.max_ttl,
            when(i.last_used_at),
            when(i.expires_at),
            "revoked" if i.revoked_at else "live",
        )
        for i in infos
    ]
    head = ("ID", "KIND", "NAME", "ALLOWANCE", "MAX TTL", "LAST USED", "EXPIRES", "STATE")
    return table(head, rows)


def _tags(pairs: tuple[str, ...], settings: Settings) -> dict[str, str]:
    broker_tags = [*settings.scope_tags, settings.caller_tag]
    own = {t.lower() for t in broker_tags}
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not plain_tag_key_ok(key):
            raise InvalidRequest(f"--tag {pair!r}: use KEY=VALUE with an STS-legal key")
        if key.lower() in own or key.lower() in {k.lower() for k in tags}:
            raise InvalidRequest(
                f"--tag {pair!r}: tag keys are unique ignoring case, and the broker sets "
                f"{', '.join(repr(t) for t in broker_tags)} itself"
            )
        if not tag_value_ok(value):
            raise InvalidRequest(
                f"--tag {pair!r}: a value is at most {MAX_TAG_VALUE} letters, digits, spaces and "
                f"{TAG_PUNCTUATION}, "
                "not starting with aws:"
            )
        tags[key] = value
    return tags


@click.group("credentials", cls=OneLineUsageGroup)
def credentials_group() -> None:
    """Manage CI bearers and personal developer secrets.

    \b
    Example:
      test-broker credentials add --kind ci --name web --scope-pattern 'ci/web/pr-*/run-*'
    """


@credentials_group.command("add")
@click.option("--kind", type=click.Choice(["ci", "dev"]), required=True)
@click.option("--name", required=True, help="Lowercase name; the allowance lives under KIND/NAME.")
@click.option("--scope-pattern", default=None, help="CI only, e.g. 'ci/NAME/pr-*/run-*'.")
@click.option("--max-ttl", type=int, default=None, help="Largest token lifetime (seconds).")
@click.option("--tag", "tag_pairs", multiple=True, help="Extra fixed tag KEY=VALUE.")
@click.option(
    "--expires-in-days", type=click.IntRange(1, 3650), default=None, help="Credential expiry."
)
@config_option
@json_option
@reports_errors
def add_command(
    kind: credentials.CredentialKind,
    name: str,
    scope_pattern: str | None,
    max_ttl: int | None,
    tag_pairs: tuple[str, ...],
    expires_in_days: int | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Issue a credential; its secret is printed once and never again.

    \b
    Examples:
      test-broker credentials add --kind ci --name web --scope-pattern 'ci/web/pr-*/run-*' --json
      test-broker credentials add --kind dev --name alice --max-ttl 900
    """
    settings = load_config(config_file)
    cap = settings.max_token_ttl_seconds
    now = int(time.time())
    if max_ttl is not None and not MIN_TOKEN_TTL <= max_ttl <= cap:
        raise InvalidRequest(
            f"--max-ttl must be between {MIN_TOKEN_TTL} and {cap} (max_token_ttl_seconds)"
        )
    extra_tags = _tags(tag_pairs, settings)
    credentials.check_mintable(settings, kind=kind, name=name, extra_tags=extra_tags, now=now)
    # Only now, so that refused input leaves no database behind.
    with closing(_open(settings, create=True)) as store:
        info, secret = credentials.add(
            store,
            kind=kind,
            name=name,
            scope_pattern=scope_pattern,
            max_ttl=max_ttl or cap,
            extra_tags=extra_tags,
            expires_at=None if expires_in_days is None else now + expires_in_days * 86400,
            now=now,
        )
    _show(info, secret, as_json)


@credentials_group.command("list")
@config_option
@json_option
@reports_errors
def list_command(config_file: Path | None, as_json: bool) -> None:
    """List credentials with last use and expiry (never secrets).

    \b
    Example:
      test-broker credentials list --json
    """
    with closing(_open(load_config(config_file))) as store:
        infos = [credentials.CredentialInfo.of(r) for r in store.list_credentials()]
    if as_json:
        click.echo(json.dumps({"credentials": [asdict(i) for i in infos]}, indent=2))
    else:
        click.echo(_table(infos))


@credentials_group.command("revoke")
@click.argument("ref")
@config_option
@json_option
@reports_errors
def revoke_command(ref: str, config_file: Path | None, as_json: bool) -> None:
    """Revoke a credential (by id or name) at once.

    \b
    Example:
      test-broker credentials revoke web
    """
    with closing(_open(load_config(config_file))) as store:
        info = credentials.revoke(store, ref, int(time.time()))
    _show(info, None, as_json)


@credentials_group.command("rotate")
@click.argument("ref")
@click.option(
    "--grace",
    type=click.IntRange(0, MAX_ROTATION_GRACE),
    default=None,
    help="Seconds the old secret keeps working (default: rotation_grace_seconds).",
)
@config_option
@json_option
@reports_errors
def rotate_command(ref: str, grace: int | None, config_file: Path | None, as_json: bool) -> None:
    """Issue a new secret; the old one stays valid for the grace period.

    \b
    Example:
      test-broker credentials rotate web --grace 3600
    """
    settings = load_config(config_file)
    with closing(_open(settings)) as store:
        chosen = settings.rotation_grace_seconds if grace is None else grace
        info, secret = credentials.rotate(store, ref, chosen, int(time.time()))
    _show(info, secret, as_json)


@click.command(cls=OneLineUsage)
@click.option("--since", default=None, help="ISO time or unix seconds.")
@click.option("--caller", default=None, help="Caller id or kind (fed, ci, dev).")
@config_option
@json_option
@reports_errors
def audit(since: str | None, caller: str | None, config_file: Path | None, as_json: bool) -> None:
    """List mint records (successes and refusals).

    Refusals before authentication (no caller known) are counted per client address and
    minute; they follow the records (not with --caller, as they have none).

    \b
    Example:
      test-broker audit --since 2026-11-23T00:00:00Z --caller ci
    """
    start = _parse_since(since)  # before touching the store: bad input changes nothing
    with closing(_open(load_config(config_file))) as store:
        records = store.read_audit(since=start, caller=caller)
        refusals = [] if caller is not None else store.read_refusals(since=start)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "records": [_record(r) for r in records],
                    "unauthenticated_refusals": [asdict(r) for r in refusals],
                },
                indent=2,
            )
        )
        return
    rows = [
        (
            when(int(r.at)),
            r.caller_kind or "-",
            r.caller_id or "-",
            r.scope or "-",
            r.jti or "-",
            r.client or "-",
            r.result,
        )
        for r in records
    ]
    click.echo(table(("TIME", "KIND", "CALLER", "SCOPE", "JTI", "CLIENT", "RESULT"), rows))
    if refusals:
        click.echo("\nrefused before authentication (per client address and minute):")
        counted = [(when(r.minute), r.client, r.error, r.count) for r in refusals]
        click.echo(table(("MINUTE", "CLIENT", "ERROR", "COUNT"), counted))


def _record(record: AuditRecord) -> dict[str, Any]:
    """A record for --json; a token exchange's subject (stored as JSON text) as an object."""
    shown = record._asdict()
    if record.subject is not None:
        with suppress(ValueError):  # damaged outside the broker: shown as stored
            shown["subject"] = json.loads(record.subject)
    return shown


_UNIX_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]+)?")


def _parse_since(since: str | None) -> float | None:
    if since is None:
        return None
    if _UNIX_SECONDS.fullmatch(since):  # float() would also take nan, inf and 1_000
        return float(since)
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise InvalidRequest(f"--since {since!r}: give unix seconds or an ISO time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
