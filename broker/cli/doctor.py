"""``test-broker doctor``: would AWS STS accept this issuer, token or trust policy?"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broker.cli.common import (
    OneLineUsage,
    config_option,
    input_file,
    json_option,
    load_config,
    read_ca_file,
    read_json_file,
    read_text_file,
    reports_errors,
    table,
)
from broker.config import CONFIG_ENV
from broker.errors import InputFileError, TrustPolicyInvalid

if TYPE_CHECKING:
    from broker.doctor.diagnose import DoctorReport

_COLOURS = {"reject": "red", "house": "yellow", "warn": "yellow"}
_LEVELS = {"reject": "REJECT", "house": "house", "warn": "warn"}


def _read_token(value: str) -> str:
    if not value.startswith("@"):
        return value.strip()
    return read_text_file(Path(value[1:]), "--token")


def _read_json(path: Path | None, option: str) -> Any:
    return None if path is None else read_json_file(path, option)


@click.command(cls=OneLineUsage)
@click.option(
    "--issuer",
    help="Provider URL: fetch its discovery and JWKS the way STS does (default with --config: "
    "the configured issuer).",
)
@click.option("--token", "token_arg", metavar="JWT|@FILE", help="A token, or @FILE holding one.")
@click.option(
    "--jwks", "jwks_file", type=input_file, help="Check against this JWKS (fully offline)."
)
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    help="Client id registered on the IAM OIDC provider (repeatable; default: the configured "
    "audience, else sts.amazonaws.com).",
)
@click.option(
    "--role-arn",
    help="Role to be assumed: applies the roles-claim pinning rules (default with --config: "
    "every configured resource's role, each of which the token must pin).",
)
@click.option(
    "--trust-policy", "policy_file", type=input_file, help="Role trust policy JSON (--token)."
)
@click.option(
    "--ca-file", type=input_file, help="Also trust this CA bundle (STS trusts public CAs)."
)
@click.option(
    "--now",
    type=click.IntRange(0, 253402300799),  # up to 9999-12-31: datetime's range
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

    if config_file is not None or os.environ.get(CONFIG_ENV):
        # Only an explicit config: the built-in default issuer is a loopback http URL.
        settings = load_config(config_file)
        issuer = issuer or settings.oidc_issuer
        audiences = audiences or (settings.audience,)
        role_arns = (role_arn,) if role_arn else tuple(settings.role_arns)
    else:
        role_arns = (role_arn,) if role_arn else ()
    audiences = audiences or ("sts.amazonaws.com",)
    if issuer is None and token_arg is None:
        raise click.UsageError("give --issuer URL, --config FILE, --token JWT|@FILE, or both")
    if policy_file is not None and token_arg is None:
        raise click.UsageError("--trust-policy is evaluated for a token: add --token")
    jwks = _read_json(jwks_file, "--jwks")
    if jwks is not None and not isinstance(jwks, dict):
        raise InputFileError(f"--jwks {str(jwks_file)!r} is no JWKS: a JWKS is a JSON object")
    if ca_file is not None:
        read_ca_file(ca_file, "--ca-file")  # refuse an unusable CA file before any fetch
    try:
        result = preflight.diagnose(
            issuer=issuer,
            token=_read_token(token_arg) if token_arg is not None else None,
            jwks=jwks,
            audiences=audiences,
            role_arns=role_arns,
            policy=_read_json(policy_file, "--trust-policy"),
            ca_file=ca_file,
            now=int(time.time()) if now is None else now,
        )
    except TrustPolicyInvalid as exc:  # name the file: the policy itself cannot
        raise TrustPolicyInvalid(f"--trust-policy {str(policy_file)!r}: {exc.message}") from None
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        _print(result)
    sys.exit(0 if result.accepted else 1)


def _print(result: DoctorReport) -> None:
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
