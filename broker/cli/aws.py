"""``test-broker policy`` and ``verify``: the AWS side, generated from the same config."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from broker.aws import policy as policies
from broker.cli.common import (
    OneLineUsage,
    OneLineUsageGroup,
    config_option,
    input_file,
    json_option,
    load_config,
    read_ca_file,
    read_text_file,
    reports_errors,
    resource_option,
    table,
)
from broker.config import Settings
from broker.errors import ConfigError

if TYPE_CHECKING:
    from broker.aws.proof import Target
    from broker.aws.verify import ProofReport


@click.group(cls=OneLineUsageGroup)
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
@resource_option
@config_option
@json_option
@reports_errors
def render_command(
    kind: policies.PolicyKind,
    target: policies.PolicyTarget,
    resource_name: str | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Print the trust, role or bucket policy JSON; notes for the person applying it go to stderr.

    trust: attach to the test role (AssumeRoleWithWebIdentity + TagSession, aud, scope tag
    required). role: the role's identity policy. bucket: the same grants as a bucket policy.
    With several [[resources]], --resource picks whose.

    \b
    Examples:
      test-broker policy render trust --config deploy/config.toml --resource mail
      aws iam put-role-policy --role-name oidc-test-role --policy-name scoped \\
        --policy-document "$(test-broker policy render role)"
    """
    settings = load_config(config_file)
    resource = settings.resource(resource_name)
    click.echo(json.dumps(policies.render(settings, kind, resource, target), indent=2))
    for note in policies.notes(settings, kind, target):
        click.echo(f"note: {note}", err=True)


@click.command(cls=OneLineUsage)
@config_option
@resource_option
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
@click.option("--role-arn", help="Role to assume (default: the resource's role).")
@click.option("--bucket", help="Test bucket (default: the resource's bucket).")
@click.option(
    "--scope-tag",
    help="Tag carrying the scope (default: the resource's scope_tag, else the config's).",
)
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
    gets and lists under --foreign-prefix. With no --resource, --role-arn or --bucket, every
    configured [[resources]] table is proven (a fresh token each) and exit 0 means all are
    isolated. Seed <foreign-prefix>test-broker-verify.txt once with admin rights: with GetObject
    but no ListBucket, S3 answers a missing key with AccessDenied, so the foreign read counts as
    denied only if your own AWS credentials (never the role's) can HeadObject it, or you say it
    exists with --probe-seeded (a CI job without credentials of its own); otherwise it is
    "unproven" and verify exits 1. --role-arn and --bucket must contain the config's
    test_marker, like the config's own names.

    --json prints one report object ("isolated", "steps", ...; "resource" names the table) for
    one resource; for several, {"isolated": all of them, "resources": [report, ...]}.

    \b
    Examples:
      test-broker verify --config deploy/config.toml
      test-broker verify --config deploy/config.toml --resource mail --json
      test-broker verify --broker-url https://oidc.example.com \\
        --role-arn arn:aws:iam::123456789012:role/oidc-test-role --bucket oidc-test-bucket
      test-broker verify --token-file token.jwt --sts-endpoint-url http://127.0.0.1:8333 \\
        --s3-endpoint-url http://127.0.0.1:8333 --json
    """
    import httpx
    from botocore.exceptions import InvalidRegionError

    from broker.aws import verify as proof

    settings = load_config(config_file)
    chosen = [o for o in ("proof", "bearer_file", "token_file") if opts[o] is not None]
    if len(chosen) > 1:
        raise click.UsageError("give at most one of --proof, --bearer-file, --token-file")
    targets = _targets(settings, opts)
    # verify writes into the bucket: an override gets the config's test_marker rule too.
    for _, t in targets:
        for option, named in (
            ("--role-arn", t.role_arn.rsplit("/", 1)[-1]),
            ("--bucket", t.bucket),
        ):
            if settings.test_marker not in named:
                raise ConfigError(
                    f"{option} names {named!r}, which does not contain test_marker "
                    f"{settings.test_marker!r}: verify only touches resources named as test "
                    "resources"
                )
    broker_url = opts["broker_url"] or settings.oidc_issuer
    try:
        parsed = httpx.URL(broker_url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"--broker-url {broker_url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"--broker-url {broker_url!r} must be an http(s) URL with a host")
    ca = opts["ca_bundle"]
    tls = read_ca_file(ca, "--ca-bundle") if ca else True
    token_text = _read_text(opts["token_file"], "--token-file")
    bearer = _read_text(opts["bearer_file"], "--bearer-file")
    reports: list[tuple[str | None, ProofReport]] = []
    with httpx.Client(base_url=broker_url, timeout=10, verify=tls) as client:
        if token_text is not None:
            tokens = proof.given_token(token_text)
        elif bearer is not None:
            tokens = proof.bearer_token(client, bearer, opts["scope"])
        else:
            tokens = proof.federation_token(client, opts["proof"] or "federation-proof")
        for name, target in targets:
            try:
                check = (
                    proof.asserted_probe("--probe-seeded")
                    if opts["probe_seeded"]
                    else proof.ambient_probe_check(target)
                )
                verifier = proof.Verifier(target, tokens, check)
            except InvalidRegionError as exc:
                raise ConfigError(f"--region {target.region!r}: {exc}") from None
            reports.append((name, verifier.run()))
    if as_json:
        click.echo(json.dumps(_json(reports), indent=2))
    else:
        _print_reports(reports)
    if not all(r.isolated for _, r in reports):
        sys.exit(1)


def _targets(settings: Settings, opts: dict[str, Any]) -> list[tuple[str | None, Target]]:
    """What to prove, named by resource: the options' one target, or every configured one."""
    from broker.aws.proof import Target

    role_arn, bucket, name = opts["role_arn"], opts["bucket"], opts["resource_name"]

    def target(role: str, bucket_name: str, tag: str) -> Target:
        return Target(
            role_arn=role,
            bucket=bucket_name,
            scope_tag=opts["scope_tag"] or tag,
            region=opts["region"],
            sts_endpoint=opts["sts_endpoint_url"],
            s3_endpoint=opts["s3_endpoint_url"],
            foreign_prefix=opts["foreign_prefix"],
        )

    if role_arn and bucket and name is None:
        return [(None, target(role_arn, bucket, settings.scope_tag))]
    if not settings.resources:
        missing = "--bucket" if role_arn else "--role-arn"
        raise ConfigError(
            f"verify needs {missing} (or a [[resources]] table): pass it or set it in the config"
        )
    picked = [settings.resource(name)] if name or role_arn or bucket else settings.resources
    return [
        (
            r.name,
            target(role_arn or settings.role_arn(r), bucket or r.bucket, settings.scope_tag_of(r)),
        )
        for r in picked
    ]


def _read_text(path: Path | None, option: str) -> str | None:
    # Tokens and secrets are ASCII; anything else is the wrong file.
    return None if path is None else read_text_file(path, option, encoding="ascii")


def _json(reports: list[tuple[str | None, ProofReport]]) -> dict[str, Any]:
    bodies = [{"resource": name} | report.as_dict() for name, report in reports]
    if len(bodies) == 1:  # the one-proof shape scripts already read
        return bodies[0]
    return {"isolated": all(r.isolated for _, r in reports), "resources": bodies}


def _print_reports(reports: list[tuple[str | None, ProofReport]]) -> None:
    several = len(reports) > 1
    rows = [
        ((name or "-",) if several else ())
        + (s.name, s.outcome, s.expected, "ok" if s.ok else "FAIL", f"{s.ms:.1f}", s.detail)
        for name, report in reports
        for s in report.steps
    ]
    head = ("STEP", "RESULT", "EXPECTED", "OK", "MS", "DETAIL")
    click.echo(table((("RESOURCE",) if several else ()) + head, rows))
    for name, report in reports:
        verdict = "isolated" if report.isolated else "NOT isolated"
        where = f"resource {name}, " if several else ""
        click.echo(f"\n{where}scope {report.scope}: {verdict} ({report.total_ms:.1f} ms)")
        for line in report.diagnosis:
            click.echo(line)
        if report.next_command:
            click.echo(f"next: {report.next_command}")
