"""``test-broker shell-init``: print the shell helper (broker/client/test-broker.sh) for eval."""

from __future__ import annotations

from importlib import resources

import click

from broker.cli.common import OneLineUsage

__all__ = ["SHELL_HELPER", "shell_init"]

SHELL_HELPER = "test-broker.sh"  # package data of broker.client, the same file as in the repo


@click.command("shell-init", cls=OneLineUsage)
def shell_init() -> None:
    """Print the bash helper (get_test_jwt, with_auth, test_run_scope, cleanup_test_scope).

    It needs only bash, curl and jq, and reads the TEST_BROKER_* environment like every
    client. The same file is broker/client/test-broker.sh in the repository, for runners
    without Python.

    \b
    Example:
      eval "$(test-broker shell-init)" && with_auth curl -sf "$GATEWAY/v1/ping"
    """
    click.echo(resources.files("broker.client").joinpath(SHELL_HELPER).read_text(), nl=False)
