"""The AWS side's tables and lists: ``[[resources]]``, ``oidc_thumbprints``, ``run_prefix_patterns``.

Each ``[[resources]]`` table names one IAM role and one S3 bucket that tokens may reach, e.g.::

    [[resources]]
    name = "mail"
    role = "agentkeys-mail-oidc-test"
    bucket = "agentkeys-mail-oidc-test"
    scope_tag = "mail_scope"   # optional; default: the broker's scope_tag

Rules that need the rest of the config (the test marker, the account, tag keys) are checked by
``check_resources`` and ``check_scope_tags``, which the settings model calls; the old single
``test_role_name`` / ``test_bucket`` keys become one table named ``default`` (``legacy_resources``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from broker.errors import ConfigError
from broker.sts.tags import MAX_TAG_KEY, MAX_TAGS, TAG_PUNCTUATION, plain_tag_key_ok

# IAM's role-name charset and length; S3's bucket naming rules (lowercase, 3-63).
ROLE_NAME = r"^[\w+=,.@-]{1,64}$"
BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# What reap may delete by default: the runs below every CI credential's namespace (ci/<name>/...)
# and below each project token exchange builds scopes for (gh/<owner or id>/..., gl/<group>/...).
# In these patterns "/**" is one or more segments (broker/aws/reap.py), so no namespace alone is
# a run. Developers' dev/<name> and the federation wallets (0x...) are not run prefixes.
DEFAULT_RUN_PREFIX_PATTERNS = ("ci/*/**", "gh/*/**", "gl/*/**")
_THUMBPRINT = re.compile(r"[0-9a-f]{40}")
LEGACY_NAME = "default"
LEGACY_KEYS = ("test_role_name", "test_bucket")
LEGACY_NOTE = (
    "test_role_name and test_bucket are deprecated: they are read as one resource named "
    f"{LEGACY_NAME!r}; write a [[resources]] table (name, role, bucket) instead"
)


class TestResource(BaseModel):
    """One test role and the bucket its tokens reach (a ``[[resources]]`` table)."""

    __test__ = False  # a config model, not a pytest test class

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Label for --resource (1-63 of a-z 0-9 -), e.g. mail.",
    )
    role: str = Field(pattern=ROLE_NAME, description="IAM role name (not an ARN).")
    bucket: str = Field(pattern=BUCKET_NAME, description="S3 bucket name.")
    scope_tag: str | None = Field(
        None,
        description="Principal tag this resource's policies read the scope from; default: "
        "the broker's scope_tag. Every token carries every configured scope tag.",
    )

    @field_validator("scope_tag")
    @classmethod
    def _tag_key_shape(cls, value: str | None) -> str | None:
        if value is not None and not plain_tag_key_ok(value):
            raise ValueError(
                f"{value!r} is not a usable STS tag key: 1-{MAX_TAG_KEY} of A-Z a-z 0-9 "
                f"{' '.join(TAG_PUNCTUATION)}, not starting with 'aws:'"
            )
        return value

    def role_arn(self, account_id: str) -> str:
        return f"arn:aws:iam::{account_id}:role/{self.role}"


def legacy_resources(data: Any) -> Any:
    """Read the deprecated ``test_role_name`` / ``test_bucket`` pair as one resource table.

    Runs on the raw values (file, environment and overrides merged) before validation; the old
    keys stay set, so ``Settings.deprecations`` can tell people to move to ``[[resources]]``.
    """
    if not isinstance(data, dict):
        return data
    given = [k for k in LEGACY_KEYS if data.get(k) is not None]
    if not given:
        return data
    if data.get("resources"):
        raise ValueError(
            f"{' and '.join(given)} (deprecated) and [[resources]] are both set; "
            "move the role and bucket into a [[resources]] table and drop the old keys"
        )
    if len(given) == 1:
        other = LEGACY_KEYS[1 - LEGACY_KEYS.index(given[0])]
        raise ValueError(
            f"{given[0]} is set without {other}: the deprecated pair is read as one test "
            "resource and needs both; better, write a [[resources]] table "
            "(name, role, bucket)"
        )
    role, bucket = data["test_role_name"], data["test_bucket"]
    return data | {"resources": [{"name": LEGACY_NAME, "role": role, "bucket": bucket}]}


def check_resources(
    resources: list[TestResource],
    *,
    marker: str,
    account_id: str | None,
    legacy: bool,
) -> None:
    """Cross-field rules: the test marker in every name, unique names, an account for ARNs."""

    def label(i: int, key: str) -> str:
        if legacy:  # name the key the person actually wrote
            return "test_role_name" if key == "role" else "test_bucket"
        return f"resources[{i}].{key} (resource {resources[i].name!r})"

    for i, resource in enumerate(resources):
        for key in ("role", "bucket"):
            value = getattr(resource, key)
            if marker not in value:
                raise ValueError(
                    f"{label(i, key)} {value!r} does not contain test_marker {marker!r}: "
                    "only resources named as test resources may be configured"
                )
    # IAM role names are unique regardless of case; bucket names are lowercase already.
    for key, fold in (("name", False), ("role", True), ("bucket", False)):
        seen: dict[str, int] = {}
        for i, resource in enumerate(resources):
            value = getattr(resource, key)
            folded = value.lower() if fold else value
            if folded in seen:
                raise ValueError(
                    f"resources[{i}].{key} {value!r} is already used by resources[{seen[folded]}]: "
                    "each resource needs its own name, role and bucket"
                )
            seen[folded] = i
    if resources and account_id is None:
        raise ValueError(
            f"{label(0, 'role')} needs aws_account_id to form the role ARN "
            "(env BROKER_AWS_ACCOUNT_ID)"
        )


def check_scope_tags(resources: list[TestResource], *, scope_tag: str, caller_tag: str) -> None:
    """Per-resource scope tags ride in every token next to the broker's own tags.

    So none may be the caller tag, and two spellings of one key (STS tag keys ignore case)
    would be duplicate tags that STS refuses.
    """
    spelled = {scope_tag.lower(): scope_tag}
    for i, resource in enumerate(resources):
        tag = resource.scope_tag
        if tag is None:
            continue
        where = f"resources[{i}].scope_tag (resource {resource.name!r})"
        if tag.lower() == caller_tag.lower():
            raise ValueError(f"{where} {tag!r} is the caller_tag; choose another key")
        if spelled.setdefault(tag.lower(), tag) != tag:
            raise ValueError(
                f"{where} {tag!r} differs only in case from {spelled[tag.lower()]!r} "
                "(STS tag keys ignore case); spell them the same"
            )
    if len(spelled) + 1 > MAX_TAGS:  # every token carries each scope tag and the caller tag
        raise ValueError(
            f"{len(spelled)} distinct scope tags and the caller tag exceed STS's {MAX_TAGS} session "
            "tags, so every mint would be refused; let resources share a scope_tag"
        )


def pick_resource(resources: list[TestResource], name: str | None) -> TestResource:
    """The resource called ``name``; without a name, the only one configured."""
    names = [r.name for r in resources]
    if not names:
        raise ConfigError(
            "no test resources are configured: add a [[resources]] table (name, role, bucket)"
        )
    if name is None:
        if len(names) > 1:
            raise ConfigError(
                f"several resources are configured ({', '.join(names)}); pick one with --resource"
            )
        return resources[0]
    for resource in resources:
        if resource.name == name:
            return resource
    raise ConfigError(f"no resource is named {name!r}; configured: {', '.join(names)}")


def check_thumbprints(values: list[str]) -> list[str]:
    """SHA-1 hex as IAM stores it: 40 lowercase hex digits (upper case is lowered)."""
    out: list[str] = []
    for value in values:
        lowered = value.strip().lower()
        if not _THUMBPRINT.fullmatch(lowered):
            raise ValueError(
                f"{value!r} is not a SHA-1 thumbprint: 40 hex digits without ':' "
                "(test-broker doctor prints the issuer's)"
            )
        if lowered not in out:
            out.append(lowered)
    return out


def check_run_prefix_patterns(values: list[str]) -> list[str]:
    """Where reap may delete. The full grammar is checked where the patterns are compiled
    (broker/callers/scopes.py, when reap runs); here only the rule the config must never break:
    a pattern starts with a literal segment, so none can cover a bucket's root."""
    for value in values:
        head = value.split("/", 1)[0]
        if not head or "*" in head or head in (".", ".."):
            raise ValueError(
                f"{value!r} must start with a literal segment such as 'ci/' (no '*', not empty): "
                "a pattern starting with a wildcard would cover the whole bucket"
            )
    return values


def run_prefix_heads(patterns: Sequence[str]) -> list[str]:
    """The literal key prefixes holding every key the patterns cover (``ci/*/**`` gives ``ci/``).

    What reap lists and what a lifecycle rule filters on (neither takes a wildcard); a prefix
    inside another one is dropped. Never empty strings: every pattern starts with a literal.
    """
    heads = set()
    for pattern in patterns:
        literal = itertools.takewhile(lambda segment: "*" not in segment, pattern.split("/"))
        heads.add("/".join(literal) + "/")
    ordered = sorted(heads)  # a prefix sorts before everything it covers
    return [h for i, h in enumerate(ordered) if not any(h.startswith(o) for o in ordered[:i])]


Thumbprints = Annotated[list[str], AfterValidator(check_thumbprints)]
RunPrefixPatterns = Annotated[list[str], AfterValidator(check_run_prefix_patterns)]
