"""The nginx site in front of a public issuer, rendered from the config (``test-broker render nginx``).

One template (``templates/nginx-site.conf``); what differs between a host and a test (ports,
listen addresses, the ACME webroot) is a field of :class:`NginxSite`, never a second template.
Every value lands in the file as one unquoted nginx token, so each is checked to be one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from broker.config import Settings
from broker.config.field_rules import NGINX_SAFE_PATH
from broker.errors import ConfigError
from broker.sts.oidc import DISCOVERY_PATH, JWKS_PATH

__all__ = [
    "ACME_WEBROOT",
    "MINT_PATHS",
    "NginxSite",
    "certbot_live_files",
    "render_nginx_site",
]

ACME_WEBROOT = Path("/var/www/test-broker-acme")
# The endpoints that mint or open a session: body-capped and limit_req'd (a test checks that
# every POST route of the broker's route table is one of these).
MINT_PATHS = ("/session/create", "/v1/mint-oidc-jwt", "/v1/token-exchange")
# Mozilla "intermediate": TLS 1.2 (STS needs it) and 1.3, forward-secret AEAD ciphers only (no
# DHE, which would need a dhparam file). Written into both 443 servers (see the template).
_TLS_POLICY = """\
    # Mozilla "intermediate": TLS 1.2 (STS needs it) and 1.3, forward-secret AEAD ciphers.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers off;
    ssl_session_timeout 1d;
    ssl_session_cache shared:test_broker_tls:10m;
    ssl_session_tickets off;"""
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_TLS_MARKER = "{{tls_marker}}"
_ACME_ONLY_END = (
    "# The TLS servers are left out (--acme-only) until the certificate exists; render the\n"
    "# site again once certbot has it.\n"
)
_LISTEN_HOST = re.compile(r"\*|\[[0-9A-Fa-f:.]+\]|[0-9.]+|[A-Za-z0-9.-]+")


@dataclass(frozen=True, kw_only=True)
class NginxSite:
    """Where the site listens and reads from; the defaults are a real host's."""

    http_port: int = 80
    https_port: int = 443
    listen: tuple[str, ...] = ("*", "[::]")  # IPv4 and IPv6 wildcards; tests use 127.0.0.1
    acme_webroot: Path = ACME_WEBROOT
    # Only the port-80 half, for certbot's first run: nginx refuses a site whose certificate
    # file does not exist yet (deploy/install.sh renders the whole site once it does).
    acme_only: bool = False


def certbot_live_files(host: str) -> tuple[Path, Path]:
    """certbot's fullchain and key of ``host`` (``certbot certonly -d HOST``)."""
    live = Path("/etc/letsencrypt/live") / host
    return live / "fullchain.pem", live / "privkey.pem"


def _nginx_rate(per_second: float) -> str:
    # nginx takes whole requests per second or per minute; never round a limit down to zero.
    if per_second >= 1:
        return f"{round(per_second)}r/s"
    return f"{max(1, round(per_second * 60))}r/m"


def _listen_lines(site: NginxSite, port: int, extra: str) -> str:
    return "\n".join(f"    listen {host}:{port}{extra};" for host in site.listen)


def _check(site: NginxSite) -> None:
    for host in site.listen:
        if not _LISTEN_HOST.fullmatch(host):
            raise ConfigError(f"listen address {host!r} is not an IP address, host name or '*'")
    for port in (site.http_port, site.https_port):
        if not 1 <= port <= 65535:
            raise ConfigError(f"port {port} is outside 1-65535")
    if site.http_port == site.https_port:
        raise ConfigError("the http and https ports must differ")
    webroot = str(site.acme_webroot)
    if not (site.acme_webroot.is_absolute() and NGINX_SAFE_PATH.fullmatch(webroot)):
        raise ConfigError(
            f"ACME webroot {webroot!r} must be an absolute path of letters, digits and . _ - / @ + = :"
        )


def render_nginx_site(settings: Settings, site: NginxSite | None = None) -> str:
    """The site file for ``settings``' issuer (an https issuer: loopback ones need no nginx)."""
    site = site or NginxSite()
    _check(site)
    parts = urlsplit(settings.oidc_issuer)
    host = parts.hostname or ""
    if parts.scheme != "https" or settings.issuer_is_loopback:
        raise ConfigError(
            f"oidc_issuer {settings.oidc_issuer!r} is not a public https issuer; nginx fronts "
            "one like https://issuer.example.com (a loopback issuer is served by the broker alone)"
        )
    if parts.path and not NGINX_SAFE_PATH.fullmatch(parts.path):
        raise ConfigError(f"issuer path {parts.path!r} cannot be written into an nginx location")
    default_cert, default_key = certbot_live_files(host)
    upstream_host, upstream_port = settings.listen_address
    if ":" in upstream_host:
        upstream_host = f"[{upstream_host}]"
    https_origin = f"https://{host}" + ("" if site.https_port == 443 else f":{site.https_port}")
    values = {
        "issuer": settings.oidc_issuer,
        "host": host,
        "http_listen": _listen_lines(site, site.http_port, ""),
        "http_listen_default": _listen_lines(site, site.http_port, " default_server"),
        "https_listen": _listen_lines(site, site.https_port, " ssl"),
        "https_listen_default": _listen_lines(site, site.https_port, " ssl default_server"),
        "https_origin": https_origin,
        "acme_webroot": str(site.acme_webroot),
        "cert_file": str(settings.tls_cert_file or default_cert),
        "key_file": str(settings.tls_key_file or default_key),
        "upstream": f"{upstream_host}:{upstream_port}",
        "max_body_bytes": str(settings.max_body_bytes),
        "mint_rate": _nginx_rate(settings.mint_rate_per_second),
        "mint_burst": str(settings.mint_burst),
        "mint_paths": "|".join(MINT_PATHS),
        "tls_policy": _TLS_POLICY,
        # The broker serves the documents at the root; the issuer's path is where STS looks.
        "discovery_path": parts.path + DISCOVERY_PATH,
        "jwks_path": parts.path + JWKS_PATH,
    }
    template = files("broker.host").joinpath("templates/nginx-site.conf").read_text("utf-8")
    head, _, tls = template.partition(_TLS_MARKER + "\n")
    template = head + (_ACME_ONLY_END if site.acme_only else tls)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
