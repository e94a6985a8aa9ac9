"""Debian's real nginx serving a rendered site from a scratch directory, for tests.

No root and no system paths: the pid file, logs and temp directories live in the directory,
``-e`` keeps nginx from opening /var/log/nginx before it reads the config, and the site listens
on free loopback ports. Readiness is polled (the pid file, then a TCP connect), never slept for.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from broker.host.nginx import NginxSite
from broker.testing.live import free_socket, wait_until

NGINX = "/usr/sbin/nginx"


@dataclass(frozen=True)
class RunningNginx:
    directory: Path
    site: NginxSite
    process: subprocess.Popen[str]

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"

    def reload(self) -> None:
        """Re-read the config and certificates (what certbot's deploy hook does on a host)."""
        self.process.send_signal(signal.SIGHUP)


def free_ports(count: int) -> list[int]:
    """Ports free a moment ago, distinct (all sockets are held until every port is chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(contextlib.closing(free_socket())) for _ in range(count)]
        return [s.getsockname()[1] for s in socks]


def loopback_site(webroot: Path) -> NginxSite:
    """A site on two free 127.0.0.1 ports with its ACME webroot in ``webroot``."""
    http_port, https_port = free_ports(2)
    return NginxSite(
        http_port=http_port, https_port=https_port, listen=("127.0.0.1",), acme_webroot=webroot
    )


def _main_conf(directory: Path, site_file: Path) -> str:
    # nginx started by root drops its workers to `nobody`, who could not read a test's
    # private tmp directory; run them as the user who runs the test.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"    access_log {directory / 'access.log'};\n"
        f"{temp}\n"
        "    default_type application/octet-stream;\n"
        f"    include {site_file};\n"
        "}\n"
    )


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def running_nginx(site_text: str, site: NginxSite, directory: Path) -> Iterator[RunningNginx]:
    """Start nginx on ``site_text`` (rendered for ``site``) in ``directory``; stop it after."""
    directory.mkdir(parents=True, exist_ok=True)
    site_file = directory / "site.conf"
    site_file.write_text(site_text, encoding="utf-8")
    conf = directory / "nginx.conf"
    conf.write_text(_main_conf(directory, site_file), encoding="utf-8")
    error_log = directory / "error.log"
    argv = [NGINX, "-p", str(directory), "-c", str(conf), "-e", str(error_log)]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t refused the site:\n{check.stderr}")
    proc = subprocess.Popen(
        [*argv, "-g", "daemon off;"],
        text=True,
        stderr=subprocess.DEVNULL,  # -e: everything goes to error.log
        start_new_session=True,
    )
    try:
        ports = (site.http_port,) if site.acme_only else (site.http_port, site.https_port)
        wait_until(lambda: proc.poll() is not None or all(map(_accepts, ports)), timeout=10)
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}: {error_log.read_text()}")
        yield RunningNginx(directory=directory, site=site, process=proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class _PinnedTransport(httpx.HTTPTransport):
    """Sends every request to 127.0.0.1 while naming ``host`` in SNI (the Host header is set
    by the client): a public issuer's name that resolves nowhere, served on loopback."""

    def __init__(self, host: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "sni_hostname": self.host}
        return super().handle_request(request)


def pinned_client(
    host: str,
    port: int,
    *,
    verify: ssl.SSLContext | bool = True,
    scheme: str = "https",
    local_address: str | None = None,
) -> httpx.Client:
    """A client for ``scheme://host:port`` that connects to 127.0.0.1 (from ``local_address``).

    The certificate is checked against ``host``, as a client resolving it would check it.
    """
    transport = _PinnedTransport(host, verify=verify, local_address=local_address)
    return httpx.Client(
        base_url=f"{scheme}://127.0.0.1:{port}",
        headers={"Host": host},
        transport=transport,
        timeout=10,
    )
