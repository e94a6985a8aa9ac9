"""``test-broker check-cert``: the issuer's TLS certificate, graded for a timer and an alert."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from broker.cli.common import (
    OneLineUsage,
    config_option,
    input_file,
    json_option,
    read_ca_file,
    reports_errors,
)
from broker.config import CONFIG_ENV, load_settings
from broker.errors import InputFileError

_COLOURS = {"OK": "green", "WARNING": "yellow", "CRITICAL": "red"}
_DAYS = click.FloatRange(0, 3650)


@click.command("check-cert", cls=OneLineUsage)
@click.option(
    "--issuer", help="https URL whose certificate to check (default with --config: the issuer)."
)
@click.option(
    "--ca-file", type=input_file, help="Also trust this CA bundle (a private CA, for tests)."
)
@click.option("--warn-days", type=_DAYS, default=21, show_default=True, help="Warn below this.")
@click.option(
    "--critical-days", type=_DAYS, default=7, show_default=True, help="Critical below this."
)
@click.option(
    "--textfile",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write Prometheus text here (node_exporter textfile collector, *.prom).",
)
@config_option
@json_option
@reports_errors
def check_cert_command(
    issuer: str | None,
    ca_file: Path | None,
    warn_days: float,
    critical_days: float,
    textfile: Path | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Check the issuer's TLS certificate: expiry, chain order, TLS 1.2, trust, thumbprint drift.

    The thumbprint (SHA-1 of the top intermediate CA) is compared with the config's
    oidc_thumbprints: a different one is drift, as after a CA changes its intermediate.
    Exits 0 when every check passes, 1 on any warning or worse, 2 on a usage error.

    \b
    Examples:
      test-broker check-cert --config /etc/test-broker/config.toml
      test-broker check-cert --issuer https://oidc.example.com --warn-days 30 --json
      test-broker check-cert --config /etc/test-broker/config.toml \\
        --textfile /var/lib/prometheus/node-exporter/test-broker.prom
    """
    from broker.doctor.cert_check import check_cert, target, write_textfile

    thumbprints: list[str] = []
    if config_file is not None or os.environ.get(CONFIG_ENV):
        # Only an explicit config: the built-in default issuer is loopback http, no certificate.
        settings = load_settings(config_file)
        issuer = issuer or settings.oidc_issuer
        thumbprints = settings.oidc_thumbprints
    if issuer is None:
        raise click.UsageError("give --issuer URL or --config FILE")
    try:
        target(issuer)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if critical_days > warn_days:
        raise click.UsageError("--critical-days must not exceed --warn-days")
    if ca_file is not None:
        read_ca_file(ca_file, "--ca-file")  # refuse an unusable CA file before connecting
    report = check_cert(
        issuer,
        now=int(time.time()),
        thumbprints=thumbprints,
        warn_days=warn_days,
        critical_days=critical_days,
        ca_file=ca_file,
    )
    if textfile is not None:
        try:
            write_textfile(report, textfile)
        except OSError as exc:  # not exit 1: that would read as a certificate warning
            raise InputFileError(
                f"--textfile {str(textfile)!r} cannot be written: {exc.strerror or exc}"
            ) from None
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        for c in report.checks:
            line = f"{c.name:<10} {c.status:<12} {c.detail}"
            click.echo(click.style(line, fg=_COLOURS[c.level.name]))
        level = report.level.name
        click.echo(click.style(f"{report.endpoint}: {level}", fg=_COLOURS[level]))
    sys.exit(0 if report.ok else 1)
