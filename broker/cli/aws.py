"""``test-broker policy`` and ``verify``: the AWS side, generated from the same config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broker.aws import policy as policies
from broker.cli.common import (
    config_option,
    input_file,
    json_option,
    read_ca_file,
    read_text_file,
    reports_errors,
    table,
)
from broker.config import load_settings
from broker.errors import ConfigError

if TYPE_CHECKING:
    from broker.aws.verify import ProofReport


@click.group()
def policy() -> None:
    """Render the IAM policies the test setup needs, from the broker's config.

    \b
    Example:
      test-broker policy render trust > trust.json
    """


@policy.command("render")
@click.argument("kind", type=click.Choice(policies.POLICY_KINDS))
@click.option(
    "--target",
    type=click.Choice(policies.TARGETS),
    default="aws",
    show_default=True,
    help="seaweedfs: the trust policy as the local SeaweedFS stand-in evaluates it.",
)
@config_option
@json_option
@reports_errors
def render_command(
    kind: policies.PolicyKind,
    target: policies.PolicyTarget,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Print the trust, role or bucket policy JSON; notes for the person applying it go to stderr.

    trust: attach to the test role (AssumeRoleWithWebIdentity + TagSession, aud, scope tag
    required). role: the role's identity policy. bucket: the same grants as a bucket policy.

    \b
    Examples:
      test-broker policy render trust --config deploy/config.toml
      aws iam put-role-policy --role-name oidc-test-role --policy-name scoped \\
        --policy-document "$(test-broker policy render role)"
    """
    settings = load_settings(config_file)
    click.echo(json.dumps(policies.render(settings, kind, target), indent=2))
    for note in policies.notes(settings, kind, target):
        click.echo(f"note: {note}", err=True)


@click.command()
@config_option
@click.option("--broker-url", help="Broker to mint from (default: the config's oidc_issuer).")
@click.option(
    "--proof", help="Federation proof for /session/create (the default: federation-proof)."
)
@click.option(
    "--bearer-file",
    type=input_file,
    help="File holding a CI or personal secret to mint with.",
)
@click.option("--scope", help="Scope to ask for with --bearer-file (default: the secret's own).")
@click.option(
    "--token-file",
    type=input_file,
    help="A ready token; nothing is minted.",
)
@click.option("--role-arn", help="Role to assume (default: the config's test role).")
@click.option("--bucket", help="Test bucket (default: the config's test_bucket).")
@click.option("--scope-tag", help="Tag carrying the scope (default: the config's scope_tag).")
@click.option("--sts-endpoint-url", help="STS endpoint, e.g. a local SeaweedFS.")
@click.option("--s3-endpoint-url", help="S3 endpoint, e.g. a local SeaweedFS.")
@click.option("--region", default="us-east-1", show_default=True)
@click.option(
    "--ca-bundle",
    type=input_file,
    help="CA to trust for the broker URL (AWS endpoints use AWS_CA_BUNDLE as usual).",
)
@click.option("--foreign-prefix", default="0xdeadbeef/", show_default=True, help="Must be denied.")
@click.option(
    "--probe-seeded",
    is_flag=True,
    help="You seeded <foreign-prefix>test-broker-verify.txt (e.g. at bring-up): take its "
    "existence as given instead of checking it with your own AWS credentials.",
)
@json_option
@reports_errors
def verify(config_file: Path | None, as_json: bool, **opts: Any) -> None:
    """Prove STS + scoped S3 isolation: own scope allowed AND foreign scope denied (exit 0).

    Mints a token, assumes the role with it, puts/gets/lists under the token's own scope, then
    gets and lists under --foreign-prefix. Seed <foreign-prefix>test-broker-verify.txt once with
    admin rights: with GetObject but no ListBucket, S3 answers a missing key with AccessDenied,
    so the foreign read counts as denied only if your own AWS credentials (never the role's)
    can HeadObject it, or you say it exists with --probe-seeded (a CI job without credentials of
    its own); otherwise it is "unproven" and verify exits 1. --role-arn and --bucket must
    contain the config's test_marker, like the config's own names.

    \b
    Examples:
      test-broker verify --config deploy/config.toml
      test-broker verify --broker-url https://oidc.example.com \\
        --role-arn arn:aws:iam::123456789012:role/oidc-test-role --bucket oidc-test-bucket
      test-broker verify --token-file token.jwt --sts-endpoint-url http://127.0.0.1:8333 \\
        --s3-endpoint-url http://127.0.0.1:8333 --json
    """
    import httpx
    from botocore.exceptions import InvalidRegionError

    from broker.aws import verify as proof
    from broker.aws.proof import Target

    settings = load_settings(config_file)
    chosen = [o for o in ("proof", "bearer_file", "token_file") if opts[o] is not None]
    if len(chosen) > 1:
        raise click.UsageError("give at most one of --proof, --bearer-file, --token-file")
    role_arn = opts["role_arn"] or settings.test_role_arn
    bucket = opts["bucket"] or settings.test_bucket
    if role_arn is None or bucket is None:
        missing = (
            "--role-arn (or test_role_name)" if role_arn is None else "--bucket (or test_bucket)"
        )
        raise ConfigError(f"verify needs {missing}: pass it or set it in the config")
    # verify writes into the bucket: an override gets the config's test_marker rule too.
    for option, name in (("--role-arn", role_arn.rsplit("/", 1)[-1]), ("--bucket", bucket)):
        if settings.test_marker not in name:
            raise ConfigError(
                f"{option} names {name!r}, which does not contain test_marker "
                f"{settings.test_marker!r}: verify only touches resources named as test resources"
            )
    broker_url = opts["broker_url"] or settings.oidc_issuer
    try:
        parsed = httpx.URL(broker_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"--broker-url {broker_url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"--broker-url {broker_url!r} must be an http(s) URL with a host")
    target = Target(
        role_arn=role_arn,
        bucket=bucket,
        scope_tag=opts["scope_tag"] or settings.scope_tag,
        region=opts["region"],
        sts_endpoint=opts["sts_endpoint_url"],
        s3_endpoint=opts["s3_endpoint_url"],
        foreign_prefix=opts["foreign_prefix"],
    )
    ca = opts["ca_bundle"]
    tls = read_ca_file(ca, "--ca-bundle") if ca else True
    token_text = _read_text(opts["token_file"], "--token-file")
    bearer = _read_text(opts["bearer_file"], "--bearer-file")
    with httpx.Client(base_url=broker_url, timeout=10, verify=tls) as client:
        if token_text is not None:
            tokens = proof.given_token(token_text)
        elif bearer is not None:
            tokens = proof.bearer_token(client, bearer, opts["scope"])
        else:
            tokens = proof.federation_token(client, opts["proof"] or "federation-proof")
        try:
            check = (
                proof.asserted_probe("--probe-seeded")
                if opts["probe_seeded"]
                else proof.ambient_probe_check(target)
            )
            verifier = proof.Verifier(target, tokens, check)
        except InvalidRegionError as exc:
            raise ConfigError(f"--region {target.region!r}: {exc}") from None
        report = verifier.run()
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)
    if not report.isolated:
        sys.exit(1)


def _read_text(path: Path | None, option: str) -> str | None:
    # Tokens and secrets are ASCII; anything else is the wrong file.
    return None if path is None else read_text_file(path, option, encoding="ascii")


def _print_report(report: ProofReport) -> None:
    rows = [
        (s.name, s.outcome, s.expected, "ok" if s.ok else "FAIL", f"{s.ms:.1f}", s.detail)
        for s in report.steps
    ]
    click.echo(table(("STEP", "RESULT", "EXPECTED", "OK", "MS", "DETAIL"), rows))
    verdict = "isolated" if report.isolated else "NOT isolated"
    click.echo(f"\nscope {report.scope}: {verdict} ({report.total_ms:.1f} ms)")
    for line in report.diagnosis:
        click.echo(line)
    if report.next_command:
        click.echo(f"next: {report.next_command}")
