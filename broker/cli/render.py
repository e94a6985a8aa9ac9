"""``test-broker render nginx``: the host's TLS site, rendered from the config."""

from __future__ import annotations

from pathlib import Path

import click

from broker.cli.common import OneLineUsageGroup, config_option, reports_errors
from broker.config import load_settings
from broker.host.nginx import ACME_WEBROOT, NginxSite, render_nginx_site
from broker.store.files import atomic_write


@click.group("render", cls=OneLineUsageGroup)
def render_group() -> None:
    """Render host files from the config.

    \b
    Example:
      test-broker render nginx --config /etc/test-broker/config.toml
    """


@render_group.command("nginx")
@config_option
@click.option(
    "--http-port", type=int, default=80, show_default=True, help="Plain-HTTP port (ACME)."
)
@click.option("--https-port", type=int, default=443, show_default=True, help="TLS port.")
@click.option(
    "--listen",
    "listen",
    multiple=True,
    help="Listen address, repeatable (default: every IPv4 and IPv6 address).",
)
@click.option(
    "--acme-webroot",
    type=click.Path(path_type=Path),
    default=ACME_WEBROOT,
    show_default=True,
    help="Directory certbot --webroot writes challenges into.",
)
@click.option(
    "--acme-only",
    is_flag=True,
    help="Only port 80 (ACME webroot, redirect): for certbot's first run, before the "
    "certificate exists.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the site to this file (0644) instead of stdout.",
)
@reports_errors
def render_nginx(
    config_file: Path | None,
    http_port: int,
    https_port: int,
    listen: tuple[str, ...],
    acme_webroot: Path,
    acme_only: bool,
    out: Path | None,
) -> None:
    """The nginx site for a public https issuer: ACME webroot and redirect on port 80; on 443
    the full chain, TLS 1.2 and 1.3, HSTS, the issuer's Host only, limit_req on the mint
    endpoints and never on discovery or JWKS; X-Forwarded-For for trusted_proxies.

    Certificates default to certbot's /etc/letsencrypt/live/<host>/ files (config
    tls_cert_file / tls_key_file override them).

    \b
    Examples:
      test-broker render nginx --config /etc/test-broker/config.toml \\
        --out /etc/nginx/sites-available/test-broker
      test-broker render nginx --acme-only --out /etc/nginx/sites-available/test-broker
      test-broker render nginx --listen 127.0.0.1 --http-port 8081 --https-port 8443
    """
    site = NginxSite(
        http_port=http_port,
        https_port=https_port,
        listen=listen or NginxSite().listen,
        acme_webroot=acme_webroot,
        acme_only=acme_only,
    )
    text = render_nginx_site(load_settings(config_file), site)
    if out is None:
        click.echo(text, nl=False)
        return
    # Written beside the target (a fresh, unguessable name) and renamed: nginx never reads half
    # a site, and nothing planted beside the target is followed.
    atomic_write(out, text.encode(), mode=0o644)
