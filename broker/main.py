"""The ``test-broker`` console script: the CLI group plus ``serve``, which runs the server.

Wiring only. The commands in broker/cli never import the server (an import-linter contract in
pyproject.toml), so the one command that starts it lives here, where both meet. The server is
imported only when ``serve`` runs, so every other command starts fast.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Any

import click

from broker.cli.common import config_option, reports_errors
from broker.cli.main import main
from broker.config import Settings, load_settings
from broker.errors import LocalIoError

__all__ = ["main"]


@main.command()
@config_option
@click.option("--host", default=None, help="Listen address (overrides config).")
@click.option("--port", type=int, default=None, help="Listen port (overrides config).")
@click.option("--check", is_flag=True, help="Validate the configuration and exit.")
@reports_errors
def serve(config_file: Path | None, host: str | None, port: int | None, check: bool) -> None:
    """Run the broker (discovery, JWKS, minting).

    \b
    Examples:
      test-broker serve
      BROKER_OIDC_ISSUER=http://127.0.0.1:9123 test-broker serve
      test-broker serve --config /etc/test-broker/config.toml --check
    """
    overrides: dict[str, Any] = {"host": host, "port": port}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    settings = load_settings(config_file, **overrides)
    listen_host, listen_port = settings.listen_address
    kinds = ", ".join(settings.minting_kinds) or "none (inert)"
    if check:
        for note in settings.deprecations:
            click.echo(f"warning: {note}", err=True)
        # deploy/install.sh reads the buckets: reap's timer is enabled only when there are some.
        buckets = ", ".join(r.bucket for r in settings.resources) or "none"
        click.echo(
            f"configuration OK: issuer {settings.oidc_issuer}, minting: {kinds}, "
            f"listen {listen_host}:{listen_port}, data {settings.data_dir}, "
            f"test buckets: {buckets}"
        )
        return
    _serve(settings, listen_host, listen_port, kinds)


def _serve(settings: Settings, host: str, port: int, kinds: str) -> None:
    import uvicorn  # only `serve` pays for the server import

    from broker.server.app import create_app, server_options
    from broker.server.logs import configure

    configure(settings.log_level)
    for note in settings.deprecations:  # stderr carries only JSON log lines while serving
        logging.getLogger("broker.config").warning(note)
    app = create_app(settings)
    sock = _listen(host, port)
    click.echo(
        f"test-broker: issuer {settings.oidc_issuer} listening on http://{host}:{port} "
        f"(minting: {kinds})"
    )  # stdout: stderr carries only JSON log lines
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        log_config=None,  # uvicorn logs through our JSON handler too
        **server_options(settings),
    )
    uvicorn.Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here: uvicorn would exit 3 with a log line if it could not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise LocalIoError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise LocalIoError(f"cannot listen on {host}:{port}: {exc}") from None
    return sock
