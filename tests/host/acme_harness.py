"""Let's Encrypt's test CA on loopback: Debian's ``pebble`` and its mock DNS, for certbot.

pebble validates HTTP-01 by connecting to the name's address on its config's ``httpPort`` (here
nginx's plain port). Names resolve through ``pebble -dnsserver`` aimed at
``pebble-challtestsrv``'s DNS, which answers 127.0.0.1 for every A query (and nothing for AAAA:
``-defaultIPv6 ""``, or pebble would dial ::1); its own challenge servers are off, nginx answers.
pebble's HTTPS certificate comes from a trustme CA (``ca_file``: ``REQUESTS_CA_BUNDLE`` for
certbot). pebble makes a new root and intermediate at every start: :meth:`Pebble.restart` is how
a test gets a CA that changed its intermediate.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trustme

from broker.testing.live import wait_until
from broker.testing.nginx import free_ports

# No random validation sleeps, no rejected nonces: certbot finishes in seconds, every time.
_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}


def _http_answers(url: str, **kwargs: Any) -> bool:
    try:
        httpx.get(url, timeout=1, **kwargs)
    except httpx.HTTPError:
        return False
    return True


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Pebble:
    directory: Path
    config: Path
    dns: str
    acme_port: int
    management_port: int
    ca_file: Path  # trusts pebble's own HTTPS endpoints
    process: subprocess.Popen[str] | None = field(default=None)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    def _get(self, path: str) -> httpx.Response:
        url = f"https://127.0.0.1:{self.management_port}{path}"
        return httpx.get(url, verify=self.trust(), timeout=5)

    def trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def root_pem(self) -> bytes:
        """The root this run of pebble issues under (a new one at every start)."""
        return self._get("/roots/0").raise_for_status().content

    def intermediate_pem(self) -> bytes:
        return self._get("/intermediates/0").raise_for_status().content

    def start(self) -> None:
        log = (self.directory / "pebble.log").open("a")
        with log:
            self.process = subprocess.Popen(
                ["pebble", "-config", str(self.config), "-dnsserver", self.dns],
                env={**os.environ, **_ENV},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        process = self.process
        # It generates its root and intermediate keys before it listens: seconds, not a guess.
        up = functools.partial(_http_answers, self.directory_url, verify=self.trust())
        wait_until(lambda: process.poll() is not None or up(), timeout=60)
        if process.poll() is not None:
            raise RuntimeError(f"pebble exited: {(self.directory / 'pebble.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def restart(self) -> None:
        """A new root and a new intermediate, as a CA rotating its chain."""
        self.stop()
        self.start()


@contextlib.contextmanager
def running_pebble(directory: Path, http_port: int) -> Iterator[Pebble]:
    """pebble validating HTTP-01 on 127.0.0.1:``http_port``, and its mock DNS; stopped after."""
    directory.mkdir(parents=True, exist_ok=True)
    acme, management, dns, management_dns, tls_port = free_ports(5)
    ca = trustme.CA()
    own = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_file = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    own.cert_chain_pems[0].write_to_path(str(cert))
    own.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    config = directory / "pebble.json"
    settings = {
        "listenAddress": f"127.0.0.1:{acme}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert),
        "privateKey": str(key),
        "httpPort": http_port,
        "tlsPort": tls_port,  # TLS-ALPN-01, unused: certbot --webroot answers HTTP-01
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    config.write_text(json.dumps({"pebble": settings}))
    challtest = [
        "pebble-challtestsrv",
        *("-dns01", f"127.0.0.1:{dns}", "-management", f"127.0.0.1:{management_dns}"),
        *("-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", ""),
    ]
    with (directory / "challtestsrv.log").open("w") as log:
        mock_dns = subprocess.Popen(
            challtest, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    pebble = Pebble(directory, config, f"127.0.0.1:{dns}", acme, management, ca_file)
    try:
        up = functools.partial(_http_answers, f"http://127.0.0.1:{management_dns}/")
        wait_until(lambda: mock_dns.poll() is not None or up(), timeout=10)
        pebble.start()
        yield pebble
    finally:
        pebble.stop()
        _stop(mock_dns)
