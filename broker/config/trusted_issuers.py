"""``[[trusted_issuers]]``: CI providers whose job tokens may be exchanged (RFC 8693) for a token.

Each table names a preset (the provider's claim set), the issuer, the ``aud`` the job token must
carry, conditions on its claims, and the template that builds the scope from its claims alone.
Checked at load, so a table that could hand one repository another's scope never starts:

- the issuer is https (a port is allowed: a trusted issuer is fetched, not published to AWS);
- the conditions pin the owner (``acme/*``, not ``*``): the provider signs for everyone on it;
- the template names only claims the provider documents, starts with a literal namespace of
  its own (``gh``/``gl``, or ``gh-…``/``gl-…``: never ``ci/``, ``dev/`` or a ``0x…`` wallet),
  and the literal prefixes of two tables never overlap.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.sts.issuer_rules import split_url

Preset = Literal["github-actions", "gitlab"]
# The derived field: the pull/merge request number, parsed from a ref claim (no such claim exists).
PR_FIELD = "pr"
FIELD = re.compile(r"\{([a-z_]+)\}")
NAMESPACE = re.compile(r"g[hl](?:-[a-z0-9]+)*")
_SEGMENT_LITERAL = re.compile(r"[A-Za-z0-9_.:=+@-]+")
EXCHANGE_TTL_CAP = 3600


class PresetInfo(BaseModel):
    """What a provider's tokens look like (from its documentation)."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    namespace: str
    template: str
    claims: frozenset[str]  # every documented claim, so a template typo is caught at load
    required: frozenset[str]  # present in every job token; a token without one is refused
    owner_claims: tuple[str, ...]  # one of them must be pinned by a condition
    project_claims: tuple[str, ...]  # the template's first field: a scope names its project first
    # Values that hold '/': a fixed number of segments, or None for any number, which the
    # template must then end with a '-' segment GitLab reserves ('/-/', as in its own URLs).
    path_claims: dict[str, int | None]
    numeric_claims: frozenset[str]  # digits only, so "run-{a}-{b}" reads one way
    pr_source: tuple[str, re.Pattern[str]]  # the claim {pr} is parsed from, and how
    max_age: int  # seconds a job token may be old (iat) when exchanged


_STANDARD = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})

PRESETS: dict[str, PresetInfo] = {
    # docs.github.com: "About security hardening with OpenID Connect", the example token.
    "github-actions": PresetInfo(
        issuer="https://token.actions.githubusercontent.com",
        namespace="gh",
        template="gh/{repository}/run-{run_id}-{run_attempt}",
        claims=_STANDARD
        | {
            "actor",
            "actor_id",
            "base_ref",
            "enterprise",
            "enterprise_id",
            "environment",
            "event_name",
            "head_ref",
            "job_workflow_ref",
            "job_workflow_sha",
            "ref",
            "ref_protected",
            "ref_type",
            "repository",
            "repository_id",
            "repository_owner",
            "repository_owner_id",
            "repository_visibility",
            "run_attempt",
            "run_id",
            "run_number",
            "runner_environment",
            "sha",
            "workflow",
            "workflow_ref",
            "workflow_sha",
        },
        required=_STANDARD
        | {"repository", "repository_id", "repository_owner", "ref", "run_id", "run_attempt"},
        owner_claims=("repository", "repository_owner", "repository_id", "repository_owner_id"),
        project_claims=("repository", "repository_id"),
        path_claims={"repository": 2},  # owner/name
        numeric_claims=frozenset(
            {"run_id", "run_attempt", "run_number", "repository_id", "repository_owner_id"}
            | {"actor_id", "enterprise_id"}
        ),
        pr_source=("ref", re.compile(r"refs/pull/([0-9]{1,10})/(?:merge|head)")),
        # A job asks for a fresh token for each exchange; GitHub's live for minutes.
        max_age=900,
    ),
    # docs.gitlab.com: "OpenID Connect (OIDC) Authentication Using ID Tokens", token payload.
    "gitlab": PresetInfo(
        issuer="https://gitlab.com",
        namespace="gl",
        template="gl/{project_path}/-/pipeline-{pipeline_id}-job-{job_id}",
        claims=_STANDARD
        | {
            "ci_config_ref_uri",
            "ci_config_sha",
            "deployment_tier",
            "environment",
            "environment_action",
            "environment_protected",
            "groups_direct",
            "job_id",
            "job_project_id",
            "job_project_path",
            "job_namespace_id",
            "job_namespace_path",
            "namespace_id",
            "namespace_path",
            "pipeline_id",
            "pipeline_source",
            "project_id",
            "project_path",
            "project_visibility",
            "ref",
            "ref_path",
            "ref_protected",
            "ref_type",
            "runner_environment",
            "runner_id",
            "sha",
            "user_access_level",
            "user_email",
            "user_id",
            "user_identities",
            "user_login",
        },
        required=_STANDARD | {"project_path", "project_id", "pipeline_id", "job_id", "ref"},
        owner_claims=("project_path", "namespace_path", "project_id", "namespace_id"),
        project_claims=("project_path", "project_id"),
        path_claims={"project_path": None, "namespace_path": None},  # subgroups nest
        numeric_claims=frozenset(
            {"pipeline_id", "job_id", "project_id", "namespace_id", "user_id", "runner_id"}
        ),
        pr_source=(
            "ref_path",
            re.compile(r"refs/merge-requests/([0-9]{1,10})/(?:head|merge|train)"),
        ),
        # A job's id_tokens are made once, at its start, and live as long as the job may run.
        max_age=3600,
    ),
}


def template_fields(template: str) -> list[str]:
    return FIELD.findall(template)


def literal_prefix(template: str) -> str:
    """The whole literal segments before the first field: ``gh`` of ``gh/{repository}/…``."""
    head = template.split("{", 1)[0]
    return head.rsplit("/", 1)[0] if "{" in template else template


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A condition: ``*`` matches any run of characters (``/`` too); the rest is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


class TrustedIssuer(BaseModel):
    """One ``[[trusted_issuers]]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Preset = Field(description="The provider: its claim set and the defaults below.")
    issuer: str | None = Field(None, description="Exact `iss`; default: the preset's.")
    audience: str = Field(min_length=1, max_length=255, description="The `aud` required.")
    conditions: dict[str, str] = Field(
        default_factory=dict, description="Claim -> exact value or `*` glob, all must match."
    )
    scope_template: str | None = Field(None, description="Scope from claims; default: preset's.")
    max_ttl_seconds: int = Field(900, ge=60, le=EXCHANGE_TTL_CAP)
    ca_file: Path | None = Field(None, description="Extra CA (PEM) for the issuer's https.")

    @property
    def info(self) -> PresetInfo:
        return PRESETS[self.preset]

    @property
    def issuer_url(self) -> str:
        return self.issuer or self.info.issuer

    @property
    def template(self) -> str:
        return self.scope_template or self.info.template

    @model_validator(mode="after")
    def _checked(self) -> TrustedIssuer:
        _check_issuer(self.issuer_url)
        _check_conditions(self)
        _check_template(self)
        if self.ca_file is not None:
            _check_ca_file(self.ca_file)
        return self


def _check_ca_file(path: Path) -> None:
    # Loaded once here so that a file that is not PEM is a config error, not a failing exchange.
    if not path.is_file():
        raise ValueError(f"ca_file {str(path)!r} does not exist")
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"ca_file {str(path)!r} holds no usable PEM certificate ({exc})") from None


def _check_issuer(url: str) -> None:
    parts = split_url(url)
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"issuer {url!r} must be an https URL (the provider's exact `iss`)")
    if parts.query or parts.fragment or url.endswith("/") or parts.username:
        raise ValueError(f"issuer {url!r}: no query, fragment, credentials or trailing '/'")


def _check_conditions(table: TrustedIssuer) -> None:
    info = table.info
    for claim, value in table.conditions.items():
        if claim not in info.claims:
            raise ValueError(
                f"conditions: {claim!r} is not a {table.preset} claim; known: "
                + ", ".join(sorted(info.claims))
            )
        if not value:
            raise ValueError(f"conditions: {claim} is empty; give a value or a glob like 'acme/*'")
    pinned = [c for c in info.owner_claims if not table.conditions.get(c, "*").startswith("*")]
    if not pinned:
        raise ValueError(
            f"conditions must pin one of {', '.join(info.owner_claims)} to a value with a literal "
            f'start (e.g. {info.owner_claims[0]} = "acme/*"): {info.issuer} signs tokens for '
            "every project on it, and any of them can ask for this audience"
        )


def _check_template(table: TrustedIssuer) -> None:
    template = table.template
    info = table.info
    rest = FIELD.sub("x", template)
    if "{" in rest or "}" in rest:
        raise ValueError(f"scope_template {template!r}: fields are {{claim}}, lowercase")
    for name in template_fields(template):
        if name != PR_FIELD and name not in info.claims:
            raise ValueError(
                f"scope_template: {{{name}}} is not a {table.preset} claim; known: "
                + ", ".join(sorted(info.claims | {PR_FIELD}))
            )
    prefix = literal_prefix(template)
    segments = prefix.split("/") if prefix else []
    if not segments or not NAMESPACE.fullmatch(segments[0]) or "{" not in template:
        raise ValueError(
            f"scope_template {template!r} must start with a literal namespace segment 'gh' or "
            "'gl' (or 'gh-…'/'gl-…') and use at least one claim: exchanged scopes live apart "
            "from ci/, dev/ and federation wallets"
        )
    if not all(_SEGMENT_LITERAL.fullmatch(s) and s not in (".", "..") for s in segments):
        raise ValueError(f"scope_template {template!r}: its literal start is no valid scope")
    first = template_fields(template)[0]
    if first not in info.project_claims or not template.startswith(f"{prefix}/{{{first}}}/"):
        raise ValueError(
            f"scope_template {template!r} must name the project right after its namespace, "
            f"as a whole segment: {prefix}/{{{info.project_claims[0]}}}/… (or "
            f"{{{info.project_claims[1]}}}), so that no project's scope can hold another's"
        )
    for name, count in info.path_claims.items():
        if count is None and f"{{{name}}}" in template and f"{{{name}}}/-/" not in template:
            raise ValueError(
                f"scope_template: {{{name}}} holds any number of segments (subgroups), so it "
                f"must be followed by '/-/' (e.g. gl/{{{name}}}/-/pipeline-{{pipeline_id}})"
            )


def check_apart(tables: list[TrustedIssuer], own_issuer: str) -> None:
    """Tables must not overlap each other's scopes, nor trust this broker's own issuer."""
    seen: list[tuple[str, str]] = []
    pairs = [(t.issuer_url, t.audience) for t in tables]
    for pair in pairs:
        if pairs.count(pair) > 1:
            raise ValueError(
                f"trusted_issuers: two tables for issuer {pair[0]} and audience {pair[1]!r}; "
                "a job token would only ever meet the first: merge them or give each its own "
                "audience"
            )
    for table in tables:
        if table.issuer_url == own_issuer:
            raise ValueError(
                f"trusted_issuers: {own_issuer} is this broker's own issuer; its tokens are "
                "never exchanged"
            )
        prefix = literal_prefix(table.template)
        for other_issuer, other in seen:
            if prefix == other or prefix.startswith(other + "/") or other.startswith(prefix + "/"):
                raise ValueError(
                    f"trusted_issuers: the scopes of {table.issuer_url} ({prefix}/…) and "
                    f"{other_issuer} ({other}/…) could overlap; give each its own namespace, "
                    'e.g. scope_template = "gl-selfhosted/{project_path}/…"'
                )
        seen.append((table.issuer_url, prefix))
