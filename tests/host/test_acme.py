"""Certificates for real: certbot obtains and renews the issuer's certificate from pebble
through the rendered nginx site, and check-cert follows it.

The flow is deploy/install.sh's and deploy/RUNBOOK.md's "first certificate": nginx starts on the
site's port-80 half alone (``--acme-only``: no certificate exists yet), certbot answers HTTP-01
from its webroot, then the whole site is rendered and nginx reloads. certbot stores the
``--deploy-hook`` (a SIGHUP to nginx) and runs it on every renewal: after ``renew
--force-renewal`` the served certificate changes with nothing else reloading nginx. Restarting
pebble gives a new intermediate: after the next renewal check-cert reports thumbprint drift.
certbot runs with its config, work and log dirs in tmp; the config's tls_cert_file and
tls_key_file name certbot's live files there (on a host they default to /etc/letsencrypt/live).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.config import load_settings
from broker.doctor.cert_check import CertReport, check_cert
from broker.host.nginx import NginxSite, render_nginx_site
from broker.testing.live import spawn_broker, wait_until
from broker.testing.nginx import RunningNginx, free_ports, pinned_client, running_nginx
from tests.doctor.cert_fixtures import to_loopback
from tests.host.acme_harness import Pebble, running_pebble

HOST = "oidc-test.example.com"
ISSUER = f"https://{HOST}"


def sha1(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - IAM's thumbprint


@dataclass
class Host:
    directory: Path
    config: Path
    site: NginxSite
    nginx: RunningNginx
    pebble: Pebble

    @property
    def live(self) -> Path:
        return self.directory / "letsencrypt" / "live" / HOST

    def certbot(self, *args: str) -> str:
        dirs = ("config", "work", "logs")
        own = [
            f"--{d}-dir={self.directory / ('letsencrypt' if d == 'config' else d)}" for d in dirs
        ]
        done = subprocess.run(
            # renew sleeps up to 8 minutes at random when run unattended, unless told not to
            ["certbot", *args, "--non-interactive", "--no-random-sleep-on-renew", *own],
            env={**os.environ, "REQUESTS_CA_BUNDLE": str(self.pebble.ca_file)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def certonly(self, *args: str) -> str:
        """certbot certonly through nginx's webroot; its deploy hook reloads nginx."""
        hook = f'kill -HUP "$(cat {self.nginx.directory / "nginx.pid"})"'
        return self.certbot(
            *("certonly", "--agree-tos", "--register-unsafely-without-email"),
            *(
                "--server",
                self.pebble.directory_url,
                "--webroot",
                "-w",
                str(self.site.acme_webroot),
            ),
            *("-d", HOST, "--deploy-hook", hook, *args),
        )

    def render_full_site(self) -> None:
        """The whole site now that the certificate exists (install.sh run again); on reload."""
        site = render_nginx_site(load_settings(self.config, environ={}), self.site)
        (self.nginx.directory / "site.conf").write_text(site)

    def check(self, ca_pems: list[bytes], thumbprints: list[str]) -> CertReport:
        bundle = self.directory / "roots.pem"
        bundle.write_bytes(b"".join(ca_pems))
        url = f"{ISSUER}:{self.site.https_port}"
        return check_cert(
            url, now=int(time.time()), ca_file=bundle, thumbprints=thumbprints, resolver=to_loopback
        )

    def issued_serial(self) -> int:
        """The serial of the leaf certbot last wrote."""
        return x509.load_pem_x509_certificate((self.live / "cert.pem").read_bytes()).serial_number

    def serves_issued(self) -> bool:
        """nginx serves certbot's latest leaf, and its pre-reload worker is gone (it would
        still answer a connection or two with the old certificate)."""
        pid = self.nginx.process.pid
        workers = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        try:
            return len(workers) == 1 and self.served_serial() == self.issued_serial()
        except ConnectionRefusedError:  # the reloaded site's 443 is not listening yet
            return False

    def served_serial(self) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # what is served, not trust
        with (
            socket.create_connection(("127.0.0.1", self.site.https_port), timeout=5) as sock,
            ctx.wrap_socket(sock, server_hostname=HOST) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    # All three at once: a port freed and chosen again would put nginx on the broker's port.
    broker_port, http_port, https_port = free_ports(3)
    config = tmp_path / "config.toml"
    live = tmp_path / "letsencrypt" / "live" / HOST
    config.write_text(
        f'oidc_issuer = "{ISSUER}"\nport = {broker_port}\ndata_dir = "{tmp_path / "data"}"\n'
        'trusted_proxies = ["127.0.0.1"]\n'
        f'tls_cert_file = "{live / "fullchain.pem"}"\ntls_key_file = "{live / "privkey.pem"}"\n'
    )
    site = NginxSite(
        http_port=http_port,
        https_port=https_port,
        listen=("127.0.0.1",),
        acme_webroot=tmp_path / "acme",
    )
    site.acme_webroot.mkdir()
    broker = spawn_broker(
        {"BROKER_CONFIG": str(config)},
        url=f"http://127.0.0.1:{broker_port}",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        acme_only = replace(site, acme_only=True)
        site_text = render_nginx_site(load_settings(config, environ={}), acme_only)
        with (
            running_nginx(site_text, acme_only, tmp_path / "nginx") as nginx,
            running_pebble(tmp_path / "pebble", site.http_port) as pebble,
        ):
            yield Host(tmp_path, config, site, nginx, pebble)
    finally:
        broker.terminate()
        broker.wait(10)


@pytest.mark.integration
def test_certbot_issues_and_renews_through_nginx_and_check_cert_follows(host: Host) -> None:
    with pytest.raises(ConnectionRefusedError):  # the first stage: no TLS until certbot's run
        host.served_serial()
    host.certonly()
    host.render_full_site()  # install.sh's second run
    host.nginx.reload()
    wait_until(host.serves_issued, timeout=10)
    roots = [host.pebble.root_pem()]
    registered = [sha1(host.pebble.intermediate_pem())]
    first = host.check(roots, registered)
    assert first.ok, json.dumps(first.as_json(), indent=2)
    assert len(first.chain) == 2  # fullchain.pem: the leaf, then pebble's intermediate
    trust = ssl.create_default_context(cafile=host.directory / "roots.pem")
    with pinned_client(HOST, host.site.https_port, verify=trust) as c:
        assert c.get("/.well-known/openid-configuration").json()["issuer"] == ISSUER

    # A forced renewal: only certbot's stored deploy hook reloads nginx.
    host.certbot("renew", "--force-renewal")
    wait_until(host.serves_issued, timeout=10)
    assert host.served_serial() != first.chain[0].serial_number
    renewed = host.check(roots, registered)
    assert renewed.ok, renewed.as_json()
    assert renewed.chain[0].serial_number == host.served_serial()
    assert renewed.thumbprint == first.thumbprint

    # The CA starts over with a new intermediate: the next certificate drifts from IAM's list.
    # pebble keeps accounts in memory, so a restarted pebble is a new CA to certbot: a new
    # account, and certonly on the same lineage.
    host.pebble.restart()
    shutil.rmtree(host.directory / "letsencrypt" / "accounts")
    host.certonly("--cert-name", HOST, "--force-renewal")
    wait_until(host.serves_issued, timeout=10)
    assert host.served_serial() != renewed.chain[0].serial_number
    drifted = host.check([*roots, host.pebble.root_pem()], registered)
    statuses = {c.name: c.status for c in drifted.checks}
    assert statuses["thumbprint"] == "drift", json.dumps(drifted.as_json(), indent=2)
    assert drifted.thumbprint == sha1(host.pebble.intermediate_pem())
    assert [c.name for c in drifted.checks if c.status != "ok"] == ["thumbprint"]
