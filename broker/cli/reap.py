"""``test-broker reap``: delete expired run prefixes in the configured test buckets."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from broker.cli.common import (
    OneLineUsage,
    config_option,
    json_option,
    load_config,
    reports_errors,
    table,
)

if TYPE_CHECKING:
    from broker.aws.reap import Failure, ReapReport

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType[int]):
    """An age such as ``7d``, ``12h``, ``30m``, ``90s`` or ``0``, in seconds."""

    name = "AGE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        found = _DURATION.fullmatch(str(value).strip())
        if found is None:
            self.fail(f"{value!r} is not an age such as 7d, 12h, 30m or 90s", param, ctx)
        return int(found.group(1)) * _UNIT[found.group(2)]


@click.command(cls=OneLineUsage)
@click.option(
    "--older-than",
    type=Duration(),
    help="Delete objects at least this old (LastModified), e.g. 7d, 12h, 0 "
    "(default: run_prefix_days; with --scope: 0, everything under it).",
)
@click.option(
    "--resource",
    "resource_name",
    metavar="NAME",
    help="Only this [[resources]] table's bucket (default: every configured bucket).",
)
@click.option(
    "--scope",
    metavar="PREFIX",
    help="Per-job cleanup: only keys under this run prefix, which run_prefix_patterns must allow.",
)
@click.option(
    "--now",
    type=click.IntRange(0, 253402300799),
    metavar="EPOCH",
    help="Judge ages as of this Unix time (default: now).",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@config_option
@json_option
@reports_errors
def reap(
    older_than: int | None,
    resource_name: str | None,
    scope: str | None,
    now: int | None,
    dry_run: bool,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Delete objects under run prefixes in the configured test buckets, and nothing else.

    Only keys below a scope that one of run_prefix_patterns allows (default: ci/*/**, gh/*/**,
    gl/*/**: the runs CI credentials and token exchange hand out; a trailing /** is one or more
    segments, so a namespace alone is never a run), in [[resources]] buckets, are
    considered; with --scope, only keys below that prefix. Everything is listed and judged
    before the first delete, so a refusal deletes nothing. Deletes go 1000 keys per
    DeleteObjects call; a key that could not be deleted is listed and the exit code is 1.
    AWS credentials and region come from the usual AWS environment (AWS_PROFILE, ...);
    AWS_ENDPOINT_URL_S3 points reap at a local stand-in.

    \b
    Examples:
      test-broker reap --older-than 7d                       # nightly
      test-broker reap --scope "ci/app/pr-12/run-34" --json   # end of a job (always run)
      test-broker reap --resource mail --dry-run
    """
    from broker.aws import reap as reaping

    settings = load_config(config_file)
    guard = reaping.RunPrefixGuard(settings.run_prefix_patterns, scope)
    buckets = reaping.reap_buckets(settings, resource_name)
    if older_than is None:
        older_than = 0 if scope else settings.run_prefix_days * 86400
    cutoff = (time.time() if now is None else now) - older_than
    s3 = reaping.default_s3()
    doomed = reaping.find_expired(s3, settings, buckets, guard, cutoff)
    failures: list[Failure] = []
    if doomed and not dry_run:
        if sys.stderr.isatty():
            with click.progressbar(length=len(doomed), label="deleting", file=sys.stderr) as bar:
                failures = reaping.delete_expired(s3, settings, doomed, guard, bar.update)
        else:
            failures = reaping.delete_expired(s3, settings, doomed, guard)
    report = reaping.summarise(
        buckets, doomed, failures, cutoff=cutoff, scope=guard.scope, dry_run=dry_run
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print(report)
    if failures:
        for f in failures:
            click.echo(f"failed: {f.bucket}/{f.key}: {f.code}: {f.message}", err=True)
        click.echo(f"error: {len(failures)} objects could not be deleted", err=True)
        sys.exit(1)


def _print(report: ReapReport) -> None:
    rows = [(b.bucket, len(b.run_prefixes), b.objects, b.bytes) for b in report.buckets]
    click.echo(table(("BUCKET", "PREFIXES", "OBJECTS", "BYTES"), rows))
    verb = "would delete" if report.dry_run else "deleted"
    total = sum(b.objects for b in report.buckets)
    click.echo(f"\n{verb} {total} objects last modified at or before {int(report.cutoff)}")
