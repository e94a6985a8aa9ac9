"""``test-broker policy`` and ``verify``: the AWS side, generated from the same config."""

from __future__ import annotations

import click


@click.group()
def policy() -> None:
    """Render IAM policies from the config (being built; see issue 5).

    \b
    Example:
      test-broker policy render trust
    """


@click.command()
def verify() -> None:
    """Prove STS + scoped S3 isolation end to end (being built; see issue 5).

    \b
    Example:
      test-broker verify --broker-url https://oidc.example.com --role-arn ARN --bucket B
    """
    raise click.UsageError("verify is not implemented yet")
