"""``test-broker doctor``: would AWS STS accept this issuer, token or trust policy?"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broker.cli.common import config_option, json_option, reports_errors, table
from broker.config import CONFIG_ENV, load_settings

if TYPE_CHECKING:
    from broker.doctor.diagnose import Report

_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)
_COLOURS = {"reject": "red", "house": "yellow", "warn": "yellow"}
_LEVELS = {"reject": "REJECT", "house": "house", "warn": "warn"}


def _read_token(value: str) -> str:
    if not value.startswith("@"):
        return value.strip()
    path = Path(value[1:])
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read token file {str(path)!r}: {exc}") from None


def _read_json(path: Path | None, option: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # deep nesting
        message = f"{str(path)!r} is not a JSON file: {exc}"
        raise click.BadParameter(message, param_hint=option) from None


@click.command()
@click.option(
    "--issuer",
    help="Provider URL: fetch its discovery and JWKS the way STS does (default with --config: "
    "the configured issuer).",
)
@click.option("--token", "token_arg", metavar="JWT|@FILE", help="A token, or @FILE holding one.")
@click.option("--jwks", "jwks_file", type=_FILE, help="Check against this JWKS (fully offline).")
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    help="Client id registered on the IAM OIDC provider (repeatable; default: the configured "
    "audience, else sts.amazonaws.com).",
)
@click.option("--role-arn", help="Role to be assumed: applies the roles-claim pinning rules.")
@click.option("--trust-policy", "policy_file", type=_FILE, help="Role trust policy JSON (--token).")
@click.option("--ca-file", type=_FILE, help="Also trust this CA bundle (STS trusts public CAs).")
@click.option(
    "--now",
    type=click.IntRange(min=0),
    metavar="EPOCH",
    help="Judge the token's times as of this Unix time, e.g. when a job failed (default: now).",
)
@config_option
@json_option
@reports_errors
def doctor(
    issuer: str | None,
    token_arg: str | None,
    jwks_file: Path | None,
    audiences: tuple[str, ...],
    role_arn: str | None,
    policy_file: Path | None,
    ca_file: Path | None,
    now: int | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Offline STS-conformance preflight: would AssumeRoleWithWebIdentity accept this?

    Prints every finding with the error STS would answer and the fix, then the outcome to expect.
    Exits 1 exactly when STS would reject. Only the issuer's own discovery, JWKS and TLS endpoint
    are contacted, at public addresses only (loopback too for a loopback issuer), 5 s and 1 MiB
    at most each; with --jwks nothing is.

    \b
    Examples:
      test-broker doctor --issuer https://oidc.example.com
      test-broker doctor --config /etc/test-broker/config.toml
      test-broker doctor --token @token.jwt --role-arn arn:aws:iam::123456789012:role/oidc-test
      test-broker doctor --token @token.jwt --jwks jwks.json --trust-policy trust.json --json
    """
    from broker.doctor import diagnose as preflight
    from broker.sts.trust_policy import PolicyError

    if config_file is not None or os.environ.get(CONFIG_ENV):
        # Only an explicit config: the built-in default issuer is a loopback http URL.
        settings = load_settings(config_file)
        issuer = issuer or settings.oidc_issuer
        audiences = audiences or (settings.audience,)
        role_arn = role_arn or settings.test_role_arn
    audiences = audiences or ("sts.amazonaws.com",)
    if issuer is None and token_arg is None:
        raise click.UsageError("give --issuer URL, --config FILE, --token JWT|@FILE, or both")
    if policy_file is not None and token_arg is None:
        raise click.UsageError("--trust-policy is evaluated for a token: add --token")
    jwks = _read_json(jwks_file, "--jwks")
    if jwks is not None and not isinstance(jwks, dict):
        raise click.BadParameter("a JWKS is a JSON object with keys", param_hint="--jwks")
    try:
        result = preflight.diagnose(
            issuer=issuer,
            token=_read_token(token_arg) if token_arg is not None else None,
            jwks=jwks,
            audiences=audiences,
            role_arn=role_arn,
            policy=_read_json(policy_file, "--trust-policy"),
            ca_file=ca_file,
            now=int(time.time()) if now is None else now,
        )
    except PolicyError as exc:
        raise click.BadParameter(str(exc), param_hint="--trust-policy") from None
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        _print(result)
    sys.exit(0 if result.accepted else 1)


def _print(result: Report) -> None:
    rows = [
        (
            _LEVELS[f.severity],
            f.rule,
            f.detail,
            f"{f.sts_code}: {f.sts_message}" if f.sts_code else "-",
            f.fix,
        )
        for f in result.findings
    ]
    if rows:
        lines = table(("LEVEL", "RULE", "FINDING", "STS WOULD ANSWER", "FIX"), rows).splitlines()
        click.echo("\n".join(lines[:2]))
        for finding, line in zip(result.findings, lines[2:], strict=True):
            click.echo(click.style(line, fg=_COLOURS[finding.severity]))
    for name, value in result.info.items():
        if name == "tls":
            for endpoint in value:
                click.echo(
                    f"tls {endpoint['endpoint']}: TLS 1.2 {'yes' if endpoint['tls12'] else 'no'}, "
                    f"certificate until {endpoint['not_after']}, IAM thumbprint (top CA) "
                    f"{endpoint['thumbprint'] or 'unknown'}"
                )
        elif value is not None:
            click.echo(f"{name.replace('_', ' ')}: {value}")
    if result.accepted:
        click.echo(click.style(f"outcome: accept ({result.message})", fg="green"))
    else:
        click.echo(click.style(f"outcome: {result.outcome}: {result.message}", fg="red"))
