"""The settings model: every field, its bounds and the cross-field rules.

Cross-field rules run before a socket opens, and each message names the field and the fix.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker.config.field_rules import (
    IssuerUrl,
    NginxPath,
    ProxyNetworks,
    SubTemplate,
    TagKey,
)
from broker.config.resources import (
    BUCKET_NAME,
    DEFAULT_RUN_PREFIX_PATTERNS,
    LEGACY_KEYS,
    LEGACY_NOTE,
    ROLE_NAME,
    RunPrefixPatterns,
    TestResource,
    Thumbprints,
    check_resources,
    check_scope_tags,
    legacy_resources,
    pick_resource,
)
from broker.config.trusted_issuers import TrustedIssuer, check_apart
from broker.sts.catalogue import MAX_LIFETIME, ROLES_CLAIM
from broker.sts.issuer_rules import is_loopback_host
from broker.sts.oidc import JWKS_PATH
from broker.sts.tags import (
    SEAWEEDFS_TAGS_CLAIM,
    TAGS_CLAIM,
)

ENV_PREFIX = "BROKER_"
MAX_ROTATION_GRACE = 7 * 86400  # a leaked old secret must not stay valid for long
DEFAULT_ISSUER = "http://127.0.0.1:8080"
# AWS caps a token's useful life at about an hour ("Token too old"); no caller kind may exceed it.
TTL_HARD_CAP = MAX_LIFETIME
# STS sets no lower bound, and the backdated iat/nbf (callers/claims.py) cover a lagging verifier;
# a token shorter than a client's round trip plus its refresh margin would be useless. Short
# tokens make "a job outlives its token" testable in seconds (tests/integration/test_token_e2e.py).
MIN_TOKEN_TTL = 10
# AWS accepts 100 keys per type; a broker needs a handful (next, active, a few retiring).
PUBLISHED_KEYS_HARD_CAP = 10
# Rate bounds: a slower refill than one token per 1000 s is no limit anyone means, and it keeps
# Retry-After ((1 - tokens) / rate, broker/server/ratelimit.py) a small finite number of seconds.
MIN_RATE_PER_SECOND = 0.001
MAX_RATE_PER_SECOND = 1_000_000.0
MAX_BURST = 1_000_000
# The file load_settings is reading; a context variable because pydantic-settings asks the class,
# not the call, for its sources.
config_file_var: ContextVar[Path | None] = ContextVar("config_file_var", default=None)


class Settings(BaseSettings):
    """All settings; see the README's config table (generated from this class)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    oidc_issuer: IssuerUrl = Field(
        DEFAULT_ISSUER, description="Issuer URL: token `iss`, discovery `issuer`, IAM provider."
    )
    audience: str = Field(
        "sts.amazonaws.com",
        min_length=1,
        max_length=255,  # IAM's limit for a client id
        description="Token `aud` (the IAM client id).",
    )
    data_dir: Path = Field(
        Path(".test-broker"),
        description="Keys and state (created 0700; an existing one must not be group/world-open).",
    )
    host: str | None = Field(
        None, description="Listen address; default: the issuer's host if loopback, else 127.0.0.1."
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="Listen port; default: the loopback issuer's, else 8080."
    )
    key_algorithm: Literal["ES256", "RS256"] = Field("ES256", description="Signing algorithm.")
    rsa_key_bits: int = Field(2048, ge=2048, le=8192, description="RSA modulus size (RS256).")
    max_published_keys: int = Field(
        4,
        ge=3,  # active, next and one retiring: with 2 no rotation could ever happen
        le=PUBLISHED_KEYS_HARD_CAP,
        description="Bound on JWKS size (next + active + retiring).",
    )
    key_reload_seconds: float = Field(
        1.0,
        ge=0.01,  # smaller only spins the reload loop (broker/server/app.py _reload_keys)
        le=60,
        allow_inf_nan=False,
        description="How often a running broker picks up `keys` CLI changes (0.01 to 60).",
    )
    token_ttl_seconds: int = Field(300, ge=MIN_TOKEN_TTL, description="Default token lifetime.")
    max_token_ttl_seconds: int = Field(
        TTL_HARD_CAP,
        ge=MIN_TOKEN_TTL,
        le=TTL_HARD_CAP,
        description="Largest lifetime any caller may ask.",
    )
    federation_proof: bool | None = Field(
        None,
        description="Mock federation-proof sessions; default: on only for a loopback issuer "
        "listening on a loopback address.",
    )
    allow_open_federation_proof: bool = Field(
        False,
        description="Opt-in needed to enable open federation-proof minting on a public issuer "
        "or a non-loopback listen address.",
    )
    session_ttl_seconds: int = Field(
        3600, ge=60, le=86400, description="Lifetime of a federation-proof session bearer."
    )
    scope_tag: TagKey = Field(
        "agentkeys_user_wallet", description="Principal tag (and claim) carrying the scope."
    )
    caller_tag: TagKey = Field("caller", description="Principal tag naming the caller kind.")
    sub_template: SubTemplate = Field(
        "agentkeys:agent:{scope}", description="Token `sub`; `{scope}` is replaced."
    )
    max_body_bytes: int = Field(
        16384, ge=256, le=1 << 20, description="Largest request body accepted."
    )
    max_header_bytes: int = Field(
        16384,
        ge=1024,
        le=1 << 20,
        description="Largest request line plus headers accepted; a longer one gets 431.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        ge=0.1,
        le=300,
        description="Time to send the request line and headers, from connecting or from the "
        "request's first byte; 408 after it.",
    )
    body_timeout_seconds: float = Field(
        10.0, ge=0.1, le=300, description="Time to send a request body once its headers are in."
    )
    max_connections: int = Field(
        512,
        ge=8,
        le=65536,
        description="Open connections; at the cap a newcomer closes the one longest in its "
        "headers (a slow client or an idle keep-alive), or gets 503 if every one is busy.",
    )
    credential_minting: bool = Field(
        False, description="Mint for CI bearers and personal secrets (`test-broker credentials`)."
    )
    rotation_grace_seconds: int = Field(
        3600, ge=0, le=MAX_ROTATION_GRACE, description="How long a rotated secret keeps working."
    )
    rate_limits: bool = Field(
        True, description="Rate limits on; `BROKER_RATE_LIMITS=off` for benchmarks (warns)."
    )
    mint_rate_per_second: float = Field(
        20,
        ge=MIN_RATE_PER_SECOND,
        le=MAX_RATE_PER_SECOND,
        allow_inf_nan=False,
        description="Mints per second per caller (0.001 to 1000000).",
    )
    mint_burst: int = Field(
        40, ge=1, le=MAX_BURST, description="Mint burst per caller (1 to 1000000)."
    )
    unauth_rate_per_second: float = Field(
        1,
        ge=MIN_RATE_PER_SECOND,
        le=MAX_RATE_PER_SECOND,
        allow_inf_nan=False,
        description="Failed authentications per second per client address (0.001 to 1000000).",
    )
    unauth_burst: int = Field(
        20,
        ge=1,
        le=MAX_BURST,
        description="Failed-authentication burst per address (1 to 1000000).",
    )
    trusted_proxies: ProxyNetworks = Field(
        default_factory=list,
        description="Reverse proxies (IPs or networks, e.g. nginx on 127.0.0.1) whose "
        "`X-Forwarded-For` names the client; empty: the peer address is the client. "
        "A network covering everyone (`0.0.0.0/0`, `::/0`) is refused.",
    )
    aws_account_id: str | None = Field(
        None, pattern=r"^[0-9]{12}$", description="AWS account of the test roles and buckets."
    )
    resources: list[TestResource] = Field(
        default_factory=list,
        description="`[[resources]]` tables (`name`, `role`, `bucket`, optional `scope_tag`): "
        f"the test roles and buckets; every token pins every role (`{ROLES_CLAIM}`).",
    )
    test_role_name: str | None = Field(
        None,
        pattern=ROLE_NAME,
        description="Deprecated: read with `test_bucket` as one resource named `default`; "
        "write a `[[resources]]` table instead.",
    )
    test_bucket: str | None = Field(
        None, pattern=BUCKET_NAME, description="Deprecated: see `test_role_name`."
    )
    oidc_thumbprints: Thumbprints = Field(
        default_factory=list,
        max_length=5,  # IAM keeps at most five per OIDC provider
        description="SHA-1 thumbprints (40 hex, stored lowercase) of the issuer's top "
        "intermediate CA, for the IAM OIDC provider.",
    )
    run_prefix_days: int = Field(
        7, ge=1, le=3650, description="Age after which run prefixes expire (`reap`, lifecycle)."
    )
    run_prefix_patterns: RunPrefixPatterns = Field(
        default_factory=lambda: list(DEFAULT_RUN_PREFIX_PATTERNS),
        description="Scope patterns (the credentials' grammar) `reap` may delete under; "
        "each starts with a literal segment.",
    )
    test_marker: str = Field(
        "oidc-test",
        min_length=3,
        description="Role and bucket names must contain it, so nothing can point at production.",
    )
    seaweedfs_tags_claim: bool = Field(
        False,
        description=f"Also emit the flat `{SEAWEEDFS_TAGS_CLAIM}` claim "
        "SeaweedFS reads (AWS's reaction to it is unverified).",
    )
    tls_cert_file: NginxPath = Field(
        None,
        description="Certificate chain nginx serves (leaf first, then intermediates); default: "
        "certbot's `/etc/letsencrypt/live/<issuer host>/fullchain.pem`.",
    )
    tls_key_file: NginxPath = Field(
        None,
        description="Its private key; default: certbot's "
        "`/etc/letsencrypt/live/<issuer host>/privkey.pem`.",
    )
    trusted_issuers: list[TrustedIssuer] = Field(
        default_factory=list,
        description="CI providers whose job tokens `POST /v1/token-exchange` takes "
        "(`[[trusted_issuers]]` tables: preset, issuer, audience, conditions, scope_template, "
        "max_ttl_seconds, ca_file); empty: the route is not mounted.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env beats the file, so one variable can override a shared config in CI.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = config_file_var.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _legacy_resource(cls, data: object) -> object:
        return legacy_resources(data)

    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.token_ttl_seconds > self.max_token_ttl_seconds:
            raise ValueError(
                f"token_ttl_seconds ({self.token_ttl_seconds}) is above max_token_ttl_seconds "
                f"({self.max_token_ttl_seconds}); lower it or raise the cap (at most {TTL_HARD_CAP})"
            )
        if self.scope_tag.lower() == self.caller_tag.lower():
            raise ValueError("scope_tag and caller_tag must differ (STS tag keys ignore case)")
        # The scope tag is also a top-level claim (upstream scripts read it there), so it must
        # not be one the token already carries: exp, say, would break every mint.
        taken = {"iss", "sub", "aud", "iat", "nbf", "exp", "jti"}
        taken |= {c.lower() for c in (ROLES_CLAIM, TAGS_CLAIM, SEAWEEDFS_TAGS_CLAIM)}
        if self.scope_tag.lower() in taken:
            raise ValueError(
                f"scope_tag {self.scope_tag!r} is a claim every token already carries; "
                "choose another name (e.g. the default agentkeys_user_wallet)"
            )
        check_resources(
            self.resources,
            marker=self.test_marker,
            account_id=self.aws_account_id,
            legacy=bool(self.deprecations),
        )
        check_scope_tags(self.resources, scope_tag=self.scope_tag, caller_tag=self.caller_tag)
        check_apart(self.trusted_issuers, self.oidc_issuer)
        if self.federation_proof and not self.local_only and not self.allow_open_federation_proof:
            raise ValueError(
                "federation_proof = true on a public issuer or a non-loopback listen address lets "
                "anyone who reaches it mint tokens; set allow_open_federation_proof = true to "
                "accept that, or turn it off"
            )
        return self

    @property
    def issuer_is_loopback(self) -> bool:
        return is_loopback_host(urlsplit(self.oidc_issuer).hostname or "")

    @property
    def local_only(self) -> bool:
        """Loopback issuer and loopback listen address: nobody else can reach this broker."""
        return self.issuer_is_loopback and is_loopback_host(self.listen_address[0])

    @property
    def federation_enabled(self) -> bool:
        # Open minting by default only where nobody else can reach it (`serve --host 0.0.0.0`).
        return self.local_only if self.federation_proof is None else self.federation_proof

    @property
    def minting_kinds(self) -> list[str]:
        """Enabled caller kinds, for people to read; empty means inert."""
        kinds = [
            ("federation-proof", self.federation_enabled),
            ("credentials", self.credential_minting),
            ("token-exchange", bool(self.trusted_issuers)),
        ]
        return [name for name, on in kinds if on]

    @property
    def open_federation_on_public_issuer(self) -> bool:
        return self.federation_enabled and not self.local_only

    @property
    def jwks_uri(self) -> str:
        return f"{self.oidc_issuer}{JWKS_PATH}"

    @property
    def deprecations(self) -> list[str]:
        """Notes for people still using deprecated keys (serve logs them, commands print them)."""
        return [LEGACY_NOTE] if any(getattr(self, k) is not None for k in LEGACY_KEYS) else []

    def role_arn(self, resource: TestResource) -> str:
        return resource.role_arn(str(self.aws_account_id))  # resources require the account

    @property
    def role_arns(self) -> list[str]:
        """Every configured role, in config order: the roles claim of every token."""
        return [self.role_arn(r) for r in self.resources]

    def scope_tag_of(self, resource: TestResource) -> str:
        """The principal tag this resource's policies read the scope from."""
        return resource.scope_tag or self.scope_tag

    @property
    def scope_tags(self) -> list[str]:
        """Every tag a token carries its scope in: the broker's own first, then the resources'."""
        return [self.scope_tag] + [
            t
            for t in dict.fromkeys(r.scope_tag for r in self.resources if r.scope_tag)
            if t != self.scope_tag
        ]

    def resource(self, name: str | None = None) -> TestResource:
        """The resource called ``name``; without a name, the only one configured."""
        return pick_resource(self.resources, name)

    @property
    def issuer_host_path(self) -> str:
        """The issuer without its scheme: IAM's provider name and condition-key prefix."""
        return self.oidc_issuer.split("://", 1)[1]

    @property
    def listen_address(self) -> tuple[str, int]:
        parts = urlsplit(self.oidc_issuer)
        if self.issuer_is_loopback:
            default_host = parts.hostname or "127.0.0.1"
            default_port = parts.port or (443 if parts.scheme == "https" else 80)
        else:
            default_host, default_port = "127.0.0.1", 8080
        return (self.host or default_host, self.port or default_port)
