"""``test-broker reap``: delete expired run prefixes in the configured test buckets, and nothing else.

Three guards, each checked before the first delete and again on every batch:

- the bucket is one of the config's ``[[resources]]`` buckets (which carry the test marker);
- the key lies strictly below a scope that one of ``run_prefix_patterns`` allows (the scope
  pattern grammar of :mod:`broker.callers.scopes`, except that a trailing ``/**`` stands for one
  or more segments: a namespace alone, ``gh`` or ``ci/app``, is never one run), and below
  ``--scope`` when one is given;
- no pattern or scope may be empty or the bucket's root.

Everything is listed and judged first; only then are the keys deleted, 1000 per ``DeleteObjects``
call (S3's limit) in quiet mode, so a refusal or a listing failure (``AwsCallFailed``) deletes
nothing. An object's age
is its ``LastModified`` against the caller's clock (``now``), so tests can age objects at will.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broker.aws.account import AwsClients, aws_call
from broker.callers.scopes import MAX_SCOPE, SCOPE_PATTERN, Allowance, check_scope
from broker.config import Settings
from broker.config.resources import run_prefix_heads
from broker.errors import ConfigError, ReapRefused, ScopeMalformed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BATCH = 1000  # DeleteObjects takes at most 1000 keys
# Allowance.allows trusts its caller to pass a well-formed scope ('.' would match a '*').
_SCOPE = re.compile(SCOPE_PATTERN)
Progress = Callable[[int], None]


class RunPrefixGuard:
    """Which keys reap may delete: keys strictly below a run prefix, and below ``scope`` if given.

    A run prefix is a scope that one of the patterns allows; a key's run prefix is the longest
    such scope its leading segments spell (for ``ci/*/**``, the key's own directory).
    """

    def __init__(self, patterns: Sequence[str], scope: str | None = None) -> None:
        if not patterns:
            raise ReapRefused(
                "run_prefix_patterns is empty, so no key is a run prefix: nothing may be reaped"
            )
        for pattern in patterns:
            head = pattern.split("/", 1)[0]
            if not head or "*" in head:  # the config refuses these too; this is the last line
                raise ReapRefused(f"run prefix pattern {pattern!r} could cover the bucket's root")
        try:
            self._allowances = [Allowance(p) for p in patterns]
            # What each "/**" pattern's head alone matches: namespaces, not runs ("gh", "ci/app").
            self._namespaces = [Allowance(p[:-3]) for p in patterns if p.endswith("/**")]
        except ScopeMalformed as exc:
            raise ConfigError(f"run_prefix_patterns: {exc.message}") from None
        self.patterns = tuple(patterns)
        self.scope = None if scope is None else self._check_scope(scope)

    def _check_scope(self, scope: str) -> str:
        trimmed = scope.removesuffix("/")  # "ci/x/run-1/" names the same prefix
        if not trimmed.strip("/"):
            raise ReapRefused(
                f"--scope {scope!r} is empty or the bucket's root: name one run prefix, "
                "e.g. --scope ci/<name>/pr-12/run-34"
            )
        try:
            check_scope(trimmed)
        except ScopeMalformed as exc:
            raise ReapRefused(f"--scope: {exc.message}") from None
        if not self._inside(trimmed):
            raise ReapRefused(
                f"--scope {trimmed!r} is outside run_prefix_patterns "
                f"({', '.join(self.patterns)}) or a whole namespace: reap deletes only run "
                "prefixes, e.g. --scope ci/<name>/pr-12/run-34"
            )
        return trimmed

    def _inside(self, prefix: str) -> bool:
        """Is ``prefix`` a scope (well-formed) that some pattern allows?"""
        if len(prefix) > MAX_SCOPE or not _SCOPE.fullmatch(prefix):
            return False
        if any(n.allows(prefix) for n in self._namespaces):
            return False
        return any(a.allows(prefix) for a in self._allowances)

    def run_prefix(self, key: str) -> str | None:
        """The run prefix ``key`` lies below, or None when reap must leave the key alone."""
        if self.scope is not None and not key.startswith(f"{self.scope}/"):
            return None
        segments = key.split("/")
        for end in range(len(segments) - 1, 0, -1):  # proper prefixes, longest first
            prefix = "/".join(segments[:end])
            if self._inside(prefix):
                return prefix
        return None

    def list_prefixes(self) -> list[str]:
        """The S3 listing prefixes that hold every key this guard admits (never the root)."""
        if self.scope is not None:
            return [f"{self.scope}/"]
        return run_prefix_heads(self.patterns)


@dataclass(frozen=True, kw_only=True)
class Doomed:
    """An object reap has judged expired and inside a run prefix."""

    bucket: str
    key: str
    size: int
    run_prefix: str


@dataclass(frozen=True, kw_only=True)
class Failure:
    bucket: str
    key: str
    code: str
    message: str


@dataclass(kw_only=True)
class BucketSummary:
    bucket: str
    run_prefixes: set[str] = field(default_factory=set)
    objects: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefixes": len(self.run_prefixes),
            "objects": self.objects,
            "bytes": self.bytes,
            "run_prefixes": sorted(self.run_prefixes),
        }


@dataclass(frozen=True, kw_only=True)
class ReapReport:
    cutoff: float
    scope: str | None
    dry_run: bool
    buckets: list[BucketSummary]
    failures: list[Failure]

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "cutoff": self.cutoff,
            "scope": self.scope,
            "buckets": [b.as_dict() for b in self.buckets],
            "failed": [vars(f) for f in self.failures],
        }


def reap_buckets(settings: Settings, resource_name: str | None) -> list[str]:
    """The buckets reap may touch: the configured resources' (one with ``resource_name``)."""
    if not settings.resources:
        raise ReapRefused(
            "no test buckets are configured: reap works only on [[resources]] buckets"
        )
    try:
        chosen = [settings.resource(resource_name)] if resource_name else settings.resources
    except ConfigError as exc:
        raise ReapRefused(exc.message) from None
    return [r.bucket for r in chosen]


def find_expired(
    s3: S3Client,
    settings: Settings,
    buckets: Sequence[str],
    guard: RunPrefixGuard,
    cutoff: float,
) -> list[Doomed]:
    """Every object to delete: in a configured bucket, below a run prefix, not newer than cutoff."""
    for bucket in buckets:
        _check_bucket(settings, bucket)
    doomed: list[Doomed] = []
    for bucket in buckets:
        for prefix in guard.list_prefixes():
            for obj in _listing(s3, bucket, prefix):
                run_prefix = guard.run_prefix(obj["Key"])
                if run_prefix is not None and obj["LastModified"].timestamp() <= cutoff:
                    doomed.append(
                        Doomed(
                            bucket=bucket, key=obj["Key"], size=obj["Size"], run_prefix=run_prefix
                        )
                    )
    return doomed


def delete_expired(
    s3: S3Client,
    settings: Settings,
    doomed: Sequence[Doomed],
    guard: RunPrefixGuard,
    progress: Progress | None = None,
) -> list[Failure]:
    """Delete ``doomed`` in batches; every batch is guarded again right before it is sent."""
    from botocore.exceptions import BotoCoreError, ClientError

    failures: list[Failure] = []
    for batch in _batches(doomed):
        bucket = batch[0].bucket
        _check_bucket(settings, bucket)
        for item in batch:
            if item.bucket != bucket or guard.run_prefix(item.key) is None:
                raise ReapRefused(
                    f"refusing to delete {item.bucket}/{item.key}: it is outside the run prefixes"
                )
        objects: Any = [{"Key": item.key} for item in batch]
        try:
            reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            errors = reply.get("Errors", [])
            failures += [
                Failure(
                    bucket=bucket,
                    key=str(e.get("Key", "")),
                    code=str(e.get("Code", "")),
                    message=str(e.get("Message", "")),
                )
                for e in errors
            ]
        except ClientError as exc:  # the whole batch: say so for each key
            err = exc.response.get("Error", {})
            code, message = str(err.get("Code", "")), str(err.get("Message", ""))
            failures += [
                Failure(bucket=bucket, key=i.key, code=code, message=message) for i in batch
            ]
        except BotoCoreError as exc:
            failures += [
                Failure(bucket=bucket, key=i.key, code=type(exc).__name__, message=str(exc))
                for i in batch
            ]
        if progress is not None:
            progress(len(batch))
    return failures


def summarise(
    buckets: Sequence[str],
    doomed: Sequence[Doomed],
    failures: Sequence[Failure],
    *,
    cutoff: float,
    scope: str | None,
    dry_run: bool,
) -> ReapReport:
    """Per bucket: the run prefixes, objects and bytes deleted (or, dry, that would be)."""
    summaries = {b: BucketSummary(bucket=b) for b in buckets}
    failed = {(f.bucket, f.key) for f in failures}
    for item in doomed:
        if (item.bucket, item.key) in failed:
            continue
        summary = summaries[item.bucket]
        summary.run_prefixes.add(item.run_prefix)
        summary.objects += 1
        summary.bytes += item.size
    return ReapReport(
        cutoff=cutoff,
        scope=scope,
        dry_run=dry_run,
        buckets=list(summaries.values()),
        failures=list(failures),
    )


def default_s3() -> S3Client:
    """S3 from boto3's default credential chain; ``AWS_ENDPOINT_URL_S3`` points it elsewhere."""
    return AwsClients.from_environment().s3


def _check_bucket(settings: Settings, bucket: str) -> None:
    configured = [r.bucket for r in settings.resources]
    if bucket not in configured or settings.test_marker not in bucket:
        raise ReapRefused(
            f"bucket {bucket!r} is not a configured test bucket ({', '.join(configured) or 'none'}): "
            "reap deletes only in [[resources]] buckets"
        )


def _listing(s3: S3Client, bucket: str, prefix: str) -> Iterator[Any]:
    """Every object under ``prefix``; a failed page is AwsCallFailed (nothing is deleted yet)."""
    token: str | None = None
    while True:
        kwargs: Any = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = aws_call(
            f"s3 list-objects-v2 {bucket}/{prefix} (nothing was deleted)",
            functools.partial(s3.list_objects_v2, **kwargs),
        )
        yield from page.get("Contents", [])
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def _batches(doomed: Sequence[Doomed]) -> Iterator[Sequence[Doomed]]:
    """Runs of at most BATCH keys of one bucket each."""
    start = 0
    while start < len(doomed):
        bucket = doomed[start].bucket
        end = start
        while end < len(doomed) and end - start < BATCH and doomed[end].bucket == bucket:
            end += 1
        yield doomed[start:end]
        start = end
