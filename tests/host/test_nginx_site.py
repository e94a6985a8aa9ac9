"""The rendered nginx site, served by Debian's real nginx in front of a real broker.

The issuer is https://broker.test, a name that resolves nowhere: clients connect to 127.0.0.1
and name the host in SNI and Host, as AWS STS would after resolving it. The certificate chain is
leaf + intermediate from a trustme root, so "the full chain, in order" is something to check.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography import x509

from broker.config import load_settings
from broker.host.nginx import MINT_PATHS, NginxSite, render_nginx_site
from broker.server.routes import ROUTES
from broker.testing.live import free_socket, spawn_broker, ssl_context
from broker.testing.nginx import RunningNginx, loopback_site, pinned_client, running_nginx

HOST = "broker.test"
ISSUER = f"https://{HOST}"
CLIENT_ADDRESS = "127.0.0.7"  # not nginx's 127.0.0.1, so the audit shows whose address it kept


@dataclass
class Stack:
    nginx: RunningNginx
    site: NginxSite
    ca: trustme.CA
    chain: list[x509.Certificate]
    broker_url: str
    env: dict[str, str]

    def client(self, *, local_address: str | None = CLIENT_ADDRESS) -> httpx.Client:
        return pinned_client(
            HOST, self.site.https_port, verify=ssl_context(self.ca), local_address=local_address
        )

    def plain(self) -> httpx.Client:
        return pinned_client(HOST, self.site.http_port, scheme="http")


def _write_config(directory: Path, broker_port: int, cert: Path, key: Path) -> Path:
    config = directory / "config.toml"
    config.write_text(
        f'oidc_issuer = "{ISSUER}"\n'
        f"port = {broker_port}\n"
        f'data_dir = "{directory / "data"}"\n'
        'trusted_proxies = ["127.0.0.1"]\n'
        "federation_proof = true\n"
        "allow_open_federation_proof = true\n"
        "max_body_bytes = 1024\n"
        "mint_rate_per_second = 1\n"
        "mint_burst = 3\n"
        f'tls_cert_file = "{cert}"\n'
        f'tls_key_file = "{key}"\n'
    )
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("nginx-site")
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert(HOST)
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    with free_socket() as sock:
        broker_port = sock.getsockname()[1]
    config = _write_config(directory, broker_port, cert, key)
    # The broker's own limits off: any 429 seen here is nginx's.
    env = {"BROKER_CONFIG": str(config), "BROKER_RATE_LIMITS": "off"}
    site = loopback_site(directory / "acme")
    text = render_nginx_site(load_settings(config, environ={}), site)
    broker_url = f"http://127.0.0.1:{broker_port}"
    proc = spawn_broker(env, url=broker_url, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with running_nginx(text, site, directory / "nginx") as nginx:
            chain = [x509.load_pem_x509_certificate(p.bytes()) for p in leaf.cert_chain_pems]
            yield Stack(nginx, site, root, chain, broker_url, env)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.integration
def test_discovery_through_nginx_names_the_configured_issuer_byte_for_byte(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get("/.well-known/openid-configuration")
        jwks = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.json()["issuer"] == ISSUER
    assert response.json()["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert response.headers["strict-transport-security"] == "max-age=63072000"
    # The same bytes the broker serves: nginx neither rewrites nor caches a stale copy.
    assert jwks.status_code == 200
    assert jwks.json()["keys"]
    assert jwks.content == httpx.get(f"{stack.broker_url}/.well-known/jwks.json").content
    # Per-caller counters are for the local scraper, not the internet.
    with stack.client() as client:
        assert client.get("/metrics").status_code == 404
    assert httpx.get(f"{stack.broker_url}/metrics").status_code == 200


def _handshake(port: int, ca: trustme.CA, version: ssl.TLSVersion) -> str:
    ctx = ssl_context(ca)
    ctx.minimum_version = ctx.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname=HOST) as tls,
    ):
        return tls.version() or ""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("version", "name"),
    [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")],
)
def test_tls_12_and_13_handshakes_succeed(stack: Stack, version: ssl.TLSVersion, name: str) -> None:
    assert _handshake(stack.site.https_port, stack.ca, version) == name


def _s_client(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOST, *args]
    return subprocess.run(argv, input="", capture_output=True, text=True, timeout=10, check=False)


@pytest.mark.integration
def test_tls_11_is_refused_by_the_server(stack: Stack) -> None:
    # SECLEVEL=0 so this client really offers TLS 1.1: the refusal must be the server's alert.
    shown = _s_client(stack.site.https_port, "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0")
    assert shown.returncode != 0
    assert "alert protocol version" in shown.stderr


@pytest.mark.integration
def test_the_full_chain_is_served_leaf_first(stack: Stack) -> None:
    shown = _s_client(stack.site.https_port, "-showcerts", "-tls1_2")
    assert shown.returncode == 0, shown.stderr
    pems = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", shown.stdout, re.DOTALL
    )
    served = [x509.load_pem_x509_certificate(p.encode()) for p in pems]
    assert served == stack.chain  # leaf, then the intermediate; never the root
    assert len(served) == 2


@pytest.mark.integration
def test_plain_http_serves_only_the_acme_webroot_and_redirects_the_rest(stack: Stack) -> None:
    challenge = stack.site.acme_webroot / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True, exist_ok=True)
    (challenge / "token-1").write_text("token-1.thumbprint")
    with stack.plain() as client:
        acme = client.get("/.well-known/acme-challenge/token-1")
        missing = client.get("/.well-known/acme-challenge/nope")
        discovery = client.get("/.well-known/openid-configuration")
        mint = client.post("/v1/mint-oidc-jwt?x=1")
    assert (acme.status_code, acme.text) == (200, "token-1.thumbprint")
    assert missing.status_code == 404
    https = f"https://{HOST}:{stack.site.https_port}"
    assert (discovery.status_code, discovery.headers["location"]) == (
        301,
        f"{https}/.well-known/openid-configuration",
    )
    assert (mint.status_code, mint.headers["location"]) == (301, f"{https}/v1/mint-oidc-jwt?x=1")


@pytest.mark.integration
def test_a_wrong_host_is_refused(stack: Stack) -> None:
    with stack.client() as client:
        wrong_host = client.get("/.well-known/openid-configuration", headers={"Host": "evil.test"})
    assert wrong_host.status_code == 421
    with pinned_client("evil.test", stack.site.http_port, scheme="http") as client:
        assert client.get("/.well-known/acme-challenge/token-1").status_code == 421
    # Another name in SNI gets no certificate at all.
    ctx = ssl_context(stack.ca)
    with (
        socket.create_connection(("127.0.0.1", stack.site.https_port), timeout=5) as sock,
        pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"),
    ):
        ctx.wrap_socket(sock, server_hostname="evil.test")


def _audit(env: dict[str, str]) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "broker", "audit", "--json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    records: list[dict[str, object]] = json.loads(out)["records"]
    return records


@pytest.mark.integration
def test_the_broker_records_the_real_client_address_and_floods_meet_nginx_429(
    stack: Stack,
) -> None:
    with stack.client() as client:
        session = client.post("/session/create", json={"auth_token": "federation-proof"})
        assert session.status_code == 200
        bearer = {"Authorization": f"Bearer {session.json()['session']}"}
        # A client naming another address is not believed: nginx replaces the header.
        spoofed = {**bearer, "X-Forwarded-For": "203.0.113.9"}
        minted = client.post("/v1/mint-oidc-jwt", headers=spoofed)
        assert minted.status_code == 200
        jti = minted.json()["jti"]
        flood = [client.post("/v1/mint-oidc-jwt", headers=bearer) for _ in range(20)]
        # ... while what STS fetches is never limited.
        fetched = [client.get("/.well-known/openid-configuration") for _ in range(30)]
        fetched += [client.get("/.well-known/jwks.json") for _ in range(30)]
    limited = [r for r in flood if r.status_code == 429]
    assert limited
    assert all(r.headers["content-type"].startswith("text/html") for r in limited)  # nginx's page
    assert {r.status_code for r in flood} <= {200, 429}
    assert {r.status_code for r in fetched} == {200}
    ours = [r for r in _audit(stack.env) if r["jti"] == jti]
    assert [(r["client"], r["result"]) for r in ours] == [(CLIENT_ADDRESS, "ok")]


@pytest.mark.integration
def test_mint_bodies_over_max_body_bytes_are_refused_by_nginx(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post("/v1/mint-oidc-jwt", content=b"{" + b" " * 2048 + b"}")
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/html")


def test_every_post_route_of_the_broker_is_rate_limited_by_the_site() -> None:
    posts = {spec.path for spec in ROUTES if "POST" in spec.methods}
    assert posts <= set(MINT_PATHS)
