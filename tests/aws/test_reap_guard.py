"""reap's guards: only keys below a run prefix, only configured buckets, never the root.

The load-bearing safety tests. Each refusal must come before any delete; the property tests check
against an independent reading of the pattern grammar that exactly the keys inside the patterns
(and below --scope) are deleted, for any mix of keys, patterns and scopes.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.aws import reap
from broker.config import Settings, load_settings
from broker.errors import ConfigError, ReapRefused

RESOURCES = [
    {"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"},
    {"name": "vault", "role": "vault-oidc-test", "bucket": "vault-oidc-test"},
]
DEFAULT = ("ci/*/**", "gh/*/**", "gl/*/**")
OLD = datetime(2020, 1, 1, tzinfo=UTC)


def config(**values: Any) -> Settings:
    return load_settings(environ={}, aws_account_id="123456789012", resources=RESOURCES, **values)


class FakeS3:
    """An in-memory bucket store with S3's listing pages and DeleteObjects, recording deletes."""

    def __init__(self, objects: dict[str, dict[str, datetime]], page: int = 3) -> None:
        self.objects = objects
        self.page = page
        self.deleted: list[tuple[str, str]] = []
        self.calls: list[str] = []

    def list_objects_v2(self, **kw: Any) -> dict[str, Any]:
        self.calls.append("list")
        keys = sorted(k for k in self.objects[kw["Bucket"]] if k.startswith(kw["Prefix"]))
        start = int(kw.get("ContinuationToken", 0))
        chunk = keys[start : start + self.page]
        more = start + self.page < len(keys)
        contents = [
            {"Key": k, "Size": len(k), "LastModified": self.objects[kw["Bucket"]][k]} for k in chunk
        ]
        reply: dict[str, Any] = {"Contents": contents, "IsTruncated": more}
        if more:
            reply["NextContinuationToken"] = str(start + self.page)
        return reply

    def delete_objects(self, **kw: Any) -> dict[str, Any]:
        self.calls.append("delete")
        assert kw["Delete"]["Quiet"] is True
        assert len(kw["Delete"]["Objects"]) <= 1000
        for obj in kw["Delete"]["Objects"]:
            del self.objects[kw["Bucket"]][obj["Key"]]
            self.deleted.append((kw["Bucket"], obj["Key"]))
        return {}


def run(
    s3: FakeS3,
    settings: Settings,
    *,
    scope: str | None = None,
    cutoff: float = 2e9,
    resource: str | None = None,
) -> reap.ReapReport:
    client = cast(Any, s3)
    guard = reap.RunPrefixGuard(settings.run_prefix_patterns, scope)
    buckets = reap.reap_buckets(settings, resource)
    doomed = reap.find_expired(client, settings, buckets, guard, cutoff)
    failures = reap.delete_expired(client, settings, doomed, guard)
    return reap.summarise(
        buckets, doomed, failures, cutoff=cutoff, scope=guard.scope, dry_run=False
    )


def store(keys: list[str], when: datetime = OLD) -> FakeS3:
    return FakeS3({"mail-oidc-test": dict.fromkeys(keys, when), "vault-oidc-test": {}})


LOOKALIKES = [
    "ci/top.txt",  # directly under ci/: no credential name, no run prefix
    "ci//run-1/a.txt",  # an empty name segment is no scope
    "cix/app/pr-1/run-1/a.txt",
    "CI/app/pr-1/run-1/a.txt",
    "dev/alice/pr-1/run-1/a.txt",
    "0xdeadbeef/ci/app/run-1/a.txt",
    "archive/ci/app/pr-1/run-1/a.txt",
    "ci/a b/run-1/x",  # a space is no scope character
    "ci/../run-1/x",
    "gh",
    "ci",
    "ci/app/x.txt",  # in a credential's namespace but in none of its runs
    "gh/notes.txt",  # directly in a namespace: every repository's runs sit below it
    "gl/g/1",
]


def test_keys_that_look_like_run_prefixes_outside_the_patterns_are_kept() -> None:
    inside = [
        "ci/app/pr-1/run-1/a.txt",
        "gh/org/repo/pr-2/run-3-1/logs/b",
        "gl/g/1/a",
    ]
    s3 = store(inside + LOOKALIKES)
    report = run(s3, config())
    assert sorted(k for _, k in s3.deleted) == sorted(inside)
    assert sorted(s3.objects["mail-oidc-test"]) == sorted(LOOKALIKES)
    (mail, vault) = report.buckets
    assert (mail.objects, sorted(mail.run_prefixes)) == (
        3,
        ["ci/app/pr-1/run-1", "gh/org/repo/pr-2/run-3-1/logs", "gl/g/1"],
    )
    assert vault.objects == 0


def test_only_objects_at_or_before_the_cutoff_go() -> None:
    s3 = store([])
    s3.objects["mail-oidc-test"] = {
        "ci/app/run-1/old": datetime.fromtimestamp(1000, UTC),
        "ci/app/run-1/edge": datetime.fromtimestamp(2000, UTC),
        "ci/app/run-2/new": datetime.fromtimestamp(2001, UTC),
    }
    run(s3, config(), cutoff=2000)
    assert list(s3.objects["mail-oidc-test"]) == ["ci/app/run-2/new"]


def test_a_scope_limits_deletion_to_keys_below_it() -> None:
    s3 = store(["ci/app/pr-1/run-1/a", "ci/app/pr-1/run-10/b", "ci/app/pr-1/run-1x", "gh/o/r/1/c"])
    run(s3, config(), scope="ci/app/pr-1/run-1/")
    assert s3.deleted == [("mail-oidc-test", "ci/app/pr-1/run-1/a")]


@pytest.mark.parametrize("scope", ["", "/", "//"])
def test_an_empty_or_root_scope_is_refused(scope: str) -> None:
    with pytest.raises(ReapRefused, match="empty or the bucket's root"):
        reap.RunPrefixGuard(DEFAULT, scope)


@pytest.mark.parametrize(
    "scope",
    [
        *("ci", "ci/app/..", "dev/alice", "0xdeadbeef", "cix/app", "ci/a b", "CI/app/run-1"),
        *("gh", "gl", "gh/acme", "ci/app"),  # whole namespaces: every other job's runs are below
    ],
)
def test_a_scope_outside_the_patterns_is_refused(scope: str) -> None:
    with pytest.raises(ReapRefused, match="--scope"):
        reap.RunPrefixGuard(DEFAULT, scope)


def test_an_unconfigured_bucket_is_refused_before_any_call() -> None:
    s3 = FakeS3({"prod-data": {"ci/app/run-1/a": OLD}})
    guard = reap.RunPrefixGuard(DEFAULT)
    with pytest.raises(ReapRefused, match="'prod-data' is not a configured test bucket"):
        reap.find_expired(cast(Any, s3), config(), ["prod-data"], guard, 2e9)
    doomed = [reap.Doomed(bucket="prod-data", key="ci/app/run-1/a", size=1, run_prefix="ci/app")]
    with pytest.raises(ReapRefused, match="not a configured test bucket"):
        reap.delete_expired(cast(Any, s3), config(), doomed, guard)
    assert s3.calls == []


def test_a_key_outside_the_patterns_is_refused_at_delete_time() -> None:
    # plan never yields one; the batch guard is the second line should a caller build its own.
    s3 = store(["dev/alice/x", "ci/app/run-1/a"])
    doomed = [
        reap.Doomed(bucket="mail-oidc-test", key=k, size=1, run_prefix="x")
        for k in ("ci/app/run-1/a", "dev/alice/x")
    ]
    with pytest.raises(ReapRefused, match="mail-oidc-test/dev/alice/x: it is outside"):
        reap.delete_expired(cast(Any, s3), config(), doomed, reap.RunPrefixGuard(DEFAULT))
    assert s3.calls == []  # the whole batch is refused, the good key too


def test_no_resources_or_an_unknown_one_is_refused() -> None:
    with pytest.raises(ReapRefused, match="no test buckets are configured"):
        reap.reap_buckets(load_settings(environ={}), None)
    with pytest.raises(ReapRefused, match="no resource is named 'prod'"):
        reap.reap_buckets(config(), "prod")
    assert reap.reap_buckets(config(), "vault") == ["vault-oidc-test"]


def test_no_patterns_means_nothing_may_be_reaped() -> None:
    with pytest.raises(ReapRefused, match="run_prefix_patterns is empty"):
        reap.RunPrefixGuard([])


@pytest.mark.parametrize("pattern", ["*/**", "/ci/**", "**"])
def test_a_pattern_covering_the_root_is_refused_even_past_the_config(pattern: str) -> None:
    with pytest.raises(ReapRefused, match="could cover the bucket's root"):
        reap.RunPrefixGuard([pattern])


def test_a_pattern_outside_the_grammar_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"run_prefix_patterns: .*at most one"):
        reap.RunPrefixGuard(["ci/**x*/run"])


def test_listing_never_starts_at_the_root() -> None:
    assert reap.RunPrefixGuard(DEFAULT).list_prefixes() == ["ci/", "gh/", "gl/"]
    guard = reap.RunPrefixGuard(["ci/*/pr-*/run-*", "ci/bot/**", "x/y/run-*"])
    assert guard.list_prefixes() == ["ci/", "x/y/"]
    assert reap.RunPrefixGuard(DEFAULT, "gh/o/r").list_prefixes() == ["gh/o/r/"]


def test_deletes_go_in_batches_of_at_most_1000_per_bucket() -> None:
    s3 = store([f"ci/app/run-1/{i:04}" for i in range(2001)])
    s3.page = 1000
    s3.objects["vault-oidc-test"] = {"gl/x/1/a": OLD}
    report = run(s3, config())
    assert s3.calls.count("delete") == 4  # 1000 + 1000 + 1 in mail, 1 in vault
    assert [b.objects for b in report.buckets] == [2001, 1]


# -- properties ------------------------------------------------------------------------------

SEGMENTS = ["ci", "gh", "gl", "dev", "app", "pr-1", "run-2", "run-", "", ".", "..", "CI", "x y"]
PATTERNS = ["ci/*/**", "gh/**", "gl/**", "ci/*/pr-*/run-*", "dev/app/run-*", "app/**"]
_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:=+@-")


def _segment_matches(segment: str, pattern: str) -> bool:
    if not segment or segment in (".", "..") or not set(segment) <= _CHARS:
        return False
    # '*' stands for one or more characters (fnmatch's for zero or more)
    return fnmatch.fnmatchcase(segment, pattern) and len(segment) >= len(
        pattern.replace("*", "")
    ) + pattern.count("*")


def _oracle_matches(parts: list[str], patterns: list[str]) -> bool:
    """An independent reading of the grammar: do these segments spell a scope a pattern allows?"""
    for pattern in patterns:
        fixed = pattern.removesuffix("/**").split("/")
        below = pattern.endswith("/**")
        # In run-prefix patterns a trailing /** is one or more segments: a namespace is no run.
        if len(parts) < len(fixed) + below or (not below and len(parts) != len(fixed)):
            continue
        if all(_segment_matches(s, p) for s, p in zip(parts, fixed, strict=False)) and all(
            _segment_matches(s, "*") for s in parts[len(fixed) :]
        ):
            return True
    return False


def _oracle_inside(key: str, patterns: list[str]) -> bool:
    """Some proper prefix of the key is a scope a pattern allows."""
    parts = key.split("/")
    return any(_oracle_matches(parts[:end], patterns) for end in range(1, len(parts)))


keys = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6).map("/".join)


@settings(max_examples=300, deadline=None)
@given(
    st.sets(keys, max_size=25),
    st.sets(keys, max_size=10),
    st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True),
)
def test_exactly_the_keys_inside_the_patterns_are_deleted(
    mail: set[str], vault: set[str], patterns: list[str]
) -> None:
    s3 = FakeS3(
        {"mail-oidc-test": dict.fromkeys(mail, OLD), "vault-oidc-test": dict.fromkeys(vault, OLD)}
    )
    run(s3, config(run_prefix_patterns=patterns))
    expected = {("mail-oidc-test", k) for k in mail if _oracle_inside(k, patterns)}
    expected |= {("vault-oidc-test", k) for k in vault if _oracle_inside(k, patterns)}
    assert set(s3.deleted) == expected


@settings(max_examples=200, deadline=None)
@given(st.sets(keys, max_size=25), keys)
def test_with_a_scope_only_keys_below_it_are_deleted(mail: set[str], scope: str) -> None:
    s3 = store(sorted(mail))
    trimmed = scope.removesuffix("/")
    allowed = _oracle_matches(trimmed.split("/"), list(DEFAULT))
    try:
        guard = reap.RunPrefixGuard(DEFAULT, scope)
    except ReapRefused:
        assert not allowed
        return
    assert allowed
    run(s3, config(), scope=scope)
    below = {k for k in mail if k.startswith(f"{trimmed}/")}
    assert {k for _, k in s3.deleted} == below  # below an allowed scope is inside by definition
    assert guard.scope == trimmed


def test_the_resource_option_limits_the_buckets() -> None:
    s3 = store(["ci/app/run-1/a"])
    s3.objects["vault-oidc-test"] = {"ci/app/run-1/b": OLD}
    run(s3, config(), resource="vault")
    assert s3.deleted == [("vault-oidc-test", "ci/app/run-1/b")]
