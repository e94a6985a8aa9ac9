"""``test-broker``: the command line. Each command parses options and calls one domain function."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

import click

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
from broker.config import Settings
from broker.store import exists, open_store
from broker.store.key_records import KeyRecord, KeyState
from broker.store.keys import KeyStore


@click.group(cls=OneLineUsageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="oidc-test-broker")
def main() -> None:
    """oidc-test-broker: a stable OIDC issuer minting AWS-STS-exact test tokens.

    \b
    Example:
      test-broker serve          # loopback issuer http://127.0.0.1:8080, data in ./.test-broker
    """


# -- keys ------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Inspect and rotate signing keys (a running broker picks changes up by itself).

    \b
    Example:
      test-broker keys rotate && test-broker keys list
    """


def _signed_until(settings: Settings, kid: str) -> int | None:
    """The largest exp the audit records show signed with ``kid``; None if none are known."""
    if not exists(settings.data_dir):
        return None
    # Through open_store like every other user of the database (it may migrate an old one;
    # only SQLite ever opens the file, so this is safe beside a running broker).
    with closing(open_store(settings.data_dir)) as store:
        return store.max_exp(kid)


class _KidCommand(OneLineUsage):
    """A command whose KID argument may start with '-' (1 in 64 RFC 7638 thumbprints do).

    Click would read ``-abc…`` or ``--abc…`` as an unknown option; every argument that is not
    one of this command's own options is moved behind ``--`` so it stays the KID.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:  # the user already separated them
            return super().parse_args(ctx, args)
        options = [p for p in self.get_params(ctx) if isinstance(p, click.Option)]
        flags = {name for p in options if p.is_flag for name in (*p.opts, *p.secondary_opts)}
        valued = {name for p in options if not p.is_flag for name in p.opts}
        own: list[str] = []
        rest: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg in valued:  # `--config F`: F is its value, whatever it starts with
                own += args[i : i + 2]
                i += 2
                continue
            (own if arg in flags or arg.partition("=")[0] in valued else rest).append(arg)
            i += 1
        return super().parse_args(ctx, [*own, "--", *rest])


def _print_keys(records: Sequence[KeyRecord], as_json: bool) -> None:
    now = int(time.time())
    if as_json:
        rows = [asdict(r) | {"published": r.published_at(now)} for r in records]
        click.echo(json.dumps({"keys": rows}, indent=2))
        return
    order = {"next": 0, "active": 1, "retiring": 2}
    rows_ = [
        (r.kid, r.alg, r.state, when(r.created_at), when(r.activated_at), when(r.retire_after))
        for r in sorted(records, key=lambda r: order[r.state])
    ]
    click.echo(table(("KID", "ALG", "STATE", "CREATED", "ACTIVATED", "RETIRE AFTER"), rows_))


@keys.command("list")
@config_option
@json_option
@reports_errors
def keys_list(config_file: Path | None, as_json: bool) -> None:
    """List keys and their states.

    \b
    Example:
      test-broker keys list --json
    """
    _print_keys(KeyStore.for_settings(load_config(config_file)).records(), as_json)


@keys.command("rotate")
@config_option
@json_option
@reports_errors
def keys_rotate(config_file: Path | None, as_json: bool) -> None:
    """Promote the published next key to active; the old key retires.

    The retiring key stays published until every token it signed is past exp + 300 s: the
    largest exp the audit records for it, or one key reload from now if that is later; a
    running broker extends it for any token it signed after that. Refused (saying when to
    retry) until the next key has been published for the JWKS cache time (60 s) plus one
    key_reload_seconds, so every verifier has seen it.

    \b
    Example:
      test-broker keys rotate
    """
    settings = load_config(config_file)
    keys = KeyStore.for_settings(settings)
    # A rotation racing this one between here and rotate() is refused there: its new next key
    # is too fresh to promote, so the kid read here is the one that retires.
    active = next((r.kid for r in keys.records() if r.state is KeyState.ACTIVE), None)
    signed_until = _signed_until(settings, active) if active else None
    _print_keys(keys.rotate(int(time.time()), signed_until=signed_until), as_json)


@keys.command("remove", cls=_KidCommand)
@click.argument("kid")
@config_option
@json_option
@reports_errors
def keys_remove(kid: str, config_file: Path | None, as_json: bool) -> None:
    """Emergency: unpublish KID at once (tokens it signed stop verifying).

    A KID starting with '-' needs no quoting or '--'.

    \b
    Example:
      test-broker keys remove 70ujgvmh9guqWZ8JEWe1NQ1AMOhRx4jQOHWoBVKrWeU
    """
    _print_keys(
        KeyStore.for_settings(load_config(config_file)).remove(kid, int(time.time())), as_json
    )


# Commands with their own modules; each imports its heavy dependencies (httpx, boto3) lazily.
from broker.cli.aws import policy, verify
from broker.cli.backup import backup_command, restore_command
from broker.cli.bringup import aws_group
from broker.cli.check_cert import check_cert_command
from broker.cli.credentials import audit, credentials_group
from broker.cli.doctor import doctor
from broker.cli.reap import reap
from broker.cli.render import render_group
from broker.cli.shell import shell_init
from broker.cli.token import token_command

main.add_command(aws_group)
main.add_command(credentials_group)
main.add_command(audit)
main.add_command(backup_command)
main.add_command(restore_command)
main.add_command(check_cert_command)
main.add_command(doctor)
main.add_command(policy)
main.add_command(render_group)
main.add_command(verify)
main.add_command(shell_init)
main.add_command(token_command)
main.add_command(reap)
