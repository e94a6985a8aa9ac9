"""``test-broker aws plan | apply | template``: the AWS side of the test setup, from the config."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broker.cli.common import (
    OneLineUsageGroup,
    config_option,
    json_option,
    load_config,
    reports_errors,
    table,
)
from broker.config import Settings
from broker.errors import ConfigError

if TYPE_CHECKING:
    from broker.aws.account import AwsClients
    from broker.aws.desired import Desired
    from broker.aws.plan import Change

region_option = click.option(
    "--region", help="Region of the buckets (default: the AWS environment's, else us-east-1)."
)


def _served_thumbprint(settings: Settings) -> str:
    """IAM's thumbprint of the issuer's served chain (its top intermediate CA), as doctor sees it."""
    from broker.doctor import tls_check

    endpoint, findings = tls_check.issuer_endpoint(settings.oidc_issuer, now=int(time.time()))
    if endpoint.thumbprint is None:
        why = "; ".join(f.detail for f in findings) or "no certificate was served"
        raise ConfigError(
            f"cannot compute the OIDC thumbprint of {settings.oidc_issuer} ({why}): serve the "
            "issuer over TLS first, or set oidc_thumbprints in the config"
        )
    click.echo(
        f"note: OIDC thumbprint {endpoint.thumbprint} is the top intermediate CA that "
        f"{endpoint.host} serves; set oidc_thumbprints to pin it",
        err=True,
    )
    return endpoint.thumbprint


def _desired(settings: Settings) -> Desired:
    from broker.aws.desired import desired_state

    return desired_state(settings, lambda: _served_thumbprint(settings))


def _checked(config_file: Path | None, region: str | None) -> tuple[AwsClients, Desired]:
    """The clients and desired state, once every refusal has passed (the account check is the
    first AWS call)."""
    from broker.aws.account import AwsClients, check_account

    desired = _desired(load_config(config_file))
    clients = AwsClients.from_environment(region)
    check_account(clients, desired.account_id)
    return clients, desired


_PLANNED = {"create": "to create", "update": "to update", "unchanged": "unchanged"}
_DONE = {"create": "created", "update": "updated", "unchanged": "unchanged"}


def _print_changes(changes: list[Change], as_json: bool, words: dict[str, str]) -> None:
    if as_json:
        click.echo(json.dumps({"changes": [c.as_dict() for c in changes]}, indent=2))
        return
    rows = [
        (c.kind, c.name, c.resource or "-", c.action, ", ".join(c.fields) or "-") for c in changes
    ]
    click.echo(table(("KIND", "NAME", "RESOURCE", "ACTION", "PARTS"), rows))
    counts = (f"{sum(c.action == a for c in changes)} {word}" for a, word in words.items())
    click.echo("\n" + ", ".join(counts))


@click.group("aws", cls=OneLineUsageGroup)
def aws_group() -> None:
    """Bring up the test side of an AWS account from the config: provider, roles, buckets.

    Every name must carry test_marker, the issuer must be public https, and the AWS
    credentials must be of aws_account_id; otherwise nothing is called. Credentials, region
    and endpoints come from the usual AWS environment (AWS_PROFILE, AWS_ENDPOINT_URL_*).

    \b
    Example:
      test-broker aws plan --config deploy/config.toml && test-broker aws apply
    """


@aws_group.command("plan")
@config_option
@region_option
@json_option
@reports_errors
def plan_command(config_file: Path | None, region: str | None, as_json: bool) -> None:
    """Show what apply would create or update; read calls only.

    Covers the OIDC provider (issuer URL, audience as client id, the served top intermediate
    CA's thumbprint unless oidc_thumbprints is set), each role (trust policy with
    sts:TagSession, scoped identity policy) and each bucket (public access block, SSE-S3, the
    bucket policy, run prefixes expiring after run_prefix_days).

    \b
    Examples:
      test-broker aws plan --config deploy/config.toml
      test-broker aws plan --json | jq '.changes[] | select(.action != "unchanged")'
    """
    from broker.aws.plan import plan

    clients, desired = _checked(config_file, region)
    _print_changes(plan(clients, desired), as_json, _PLANNED)


@aws_group.command("apply")
@config_option
@region_option
@json_option
@reports_errors
def apply_command(config_file: Path | None, region: str | None, as_json: bool) -> None:
    """Create or update what plan shows, one resource at a time (progress on stderr).

    Idempotent: only the parts that differ are written, and a plan afterwards shows every
    resource unchanged.

    \b
    Example:
      test-broker aws apply --config deploy/config.toml
    """
    from broker.aws.apply import apply
    from broker.aws.plan import plan

    clients, desired = _checked(config_file, region)
    changes = plan(clients, desired)

    def progress(change: Change) -> None:
        parts = f" ({', '.join(change.fields)})" if change.action == "update" else ""
        click.echo(f"{change.kind} {change.name}: {_DONE[change.action]}{parts}", err=True)

    apply(clients, desired, changes, progress)
    _print_changes(changes, as_json, _DONE)


@aws_group.command("template")
@config_option
@json_option
@reports_errors
def template_command(config_file: Path | None, as_json: bool) -> None:
    """Print the same resources as a CloudFormation template (JSON); no AWS call.

    The template is JSON either way; --json makes a failure a JSON body too.

    \b
    Example:
      test-broker aws template > test-broker.cfn.json
      aws cloudformation deploy --template-file test-broker.cfn.json \\
        --stack-name oidc-test-broker --capabilities CAPABILITY_NAMED_IAM
    """
    from broker.aws.template import render_template

    click.echo(json.dumps(render_template(_desired(load_config(config_file))), indent=2))
