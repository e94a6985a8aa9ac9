"""The client environment contract (design.md): where the broker is and how to authenticate.

Every client — ``test-broker token``, this package, the pytest plugin, the shell helper — reads
the same variables; a flag or argument given explicitly beats its variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from broker.client import ci_token
from broker.client.ci_token import AUDIENCE_VAR, SubjectSource
from broker.errors import ConfigError, InputFileError

URL_VAR = "TEST_BROKER_URL"
BEARER_VAR = "TEST_BROKER_BEARER"
BEARER_FILE_VAR = "TEST_BROKER_BEARER_FILE"
AUTH_TOKEN_VAR = "TEST_BROKER_AUTH_TOKEN"  # noqa: S105 - a variable's name
SCOPE_VAR = "TEST_BROKER_SCOPE"
ROLE_ARN_VAR = "TEST_BROKER_ROLE_ARN"
BUCKET_VAR = "TEST_BROKER_BUCKET"
DEFAULT_PROOF = "federation-proof"  # the upstream mock backend's default proof string


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Resolved settings of one client: exactly one of ``bearer``, ``proof`` and ``subject``.

    ``bearer`` is a CI or personal secret; ``proof`` selects the federation-proof flow
    (``POST /session/create`` with it, then mint with the session); ``subject`` is where the CI
    job's own OIDC token comes from, exchanged at ``/v1/token-exchange`` (no secret at all).
    """

    url: str
    bearer: str | None = None
    proof: str | None = None
    subject: SubjectSource | None = None
    scope: str | None = None
    role_arn: str | None = None
    bucket: str | None = None

    def __post_init__(self) -> None:
        given = [x for x in (self.bearer, self.proof, self.subject) if x is not None]
        if len(given) > 1:
            raise ConfigError("give one credential: a bearer, a federation proof or a job token")
        if not given:
            raise ConfigError(
                f"no credential: set {BEARER_VAR} or {BEARER_FILE_VAR} (a CI or personal "
                f"secret), or {AUTH_TOKEN_VAR} (federation proof), run in a CI job that offers "
                "its OIDC token, or pass --bearer-file, --federation-proof or --github-actions"
            )
        object.__setattr__(self, "url", self.url.rstrip("/"))
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"broker URL {self.url!r} is not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError(f"broker URL {self.url!r} must be http(s)://host[:port][/path]")
        if parsed.query or parsed.fragment or not 0 < (parsed.port or 80) < 65536:
            raise ConfigError(f"broker URL {self.url!r}: a base URL has no query, and a valid port")

    @property
    def federation(self) -> bool:
        return self.proof is not None

    @property
    def exchange(self) -> bool:
        return self.subject is not None


def config_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    url: str | None = None,
    bearer: str | None = None,
    bearer_file: Path | str | None = None,
    federation_proof: bool = False,
    auth_token: str | None = None,
    scope: str | None = None,
    role_arn: str | None = None,
    bucket: str | None = None,
    github_actions: bool = False,
    subject_token_file: Path | str | None = None,
    subject_token_env: str | None = None,
    audience: str | None = None,
) -> ClientConfig:
    """The config from explicit arguments, each falling back to its contract variable.

    An explicit credential (``bearer``, ``bearer_file``, ``federation_proof``, ``auth_token``,
    ``github_actions``, ``subject_token_file``, ``subject_token_env``) replaces every credential
    variable. Among the variables a bearer beats a federation proof, and both beat the job token
    a CI job offers on its own (GitHub's token service, GitLab's ``TEST_BROKER_ID_TOKEN``): a
    variable someone set says what they want, the job's are there whether wanted or not. The
    job token's audience: ``audience``, else ``TEST_BROKER_AUDIENCE``, else the broker URL.
    """
    env = os.environ if environ is None else environ
    base = url or env.get(URL_VAR)
    if not base:
        raise ConfigError(f"no broker URL: pass --broker URL or set {URL_VAR}")
    aud = audience or env.get(AUDIENCE_VAR) or base.rstrip("/")
    subject = _explicit_subject(env, aud, github_actions, subject_token_file, subject_token_env)
    explicit = bearer is not None or bearer_file is not None or federation_proof or auth_token
    if subject is not None:
        if explicit:
            raise ConfigError("a job token excludes --bearer-file and --federation-proof")
        bearer = proof = None
    elif explicit:
        if bearer is None and bearer_file is not None:
            bearer = read_bearer_file(Path(bearer_file), "--bearer-file")
        proof = None if bearer is not None else auth_token or env.get(AUTH_TOKEN_VAR)
        if bearer is None:
            proof = proof or DEFAULT_PROOF
    else:
        bearer = env.get(BEARER_VAR) or None
        if bearer is None and env.get(BEARER_FILE_VAR):
            bearer = read_bearer_file(Path(env[BEARER_FILE_VAR]), BEARER_FILE_VAR)
        proof = None if bearer is not None else env.get(AUTH_TOKEN_VAR) or None
        if bearer is None and proof is None:
            subject = ci_token.from_job(env, aud)
    return ClientConfig(
        url=base,
        bearer=bearer,
        proof=proof,
        subject=subject,
        scope=scope or env.get(SCOPE_VAR) or None,
        role_arn=role_arn or env.get(ROLE_ARN_VAR) or None,
        bucket=bucket or env.get(BUCKET_VAR) or None,
    )


def _explicit_subject(
    env: Mapping[str, str],
    audience: str,
    github_actions: bool,
    token_file: Path | str | None,
    token_env: str | None,
) -> SubjectSource | None:
    chosen = [github_actions, token_file is not None, token_env is not None]
    if sum(chosen) > 1:
        raise ConfigError(
            "give one of --github-actions, --subject-token-file and --subject-token-env"
        )
    if github_actions:
        return ci_token.github_actions(env, audience)
    if token_file is not None:
        return ci_token.TokenFile(Path(token_file))
    if token_env is not None:
        return ci_token.TokenEnv(token_env, env)
    return None


def credential_in_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment names a credential: a contract variable or a CI job's token."""
    env = os.environ if environ is None else environ
    if any(env.get(var) for var in (BEARER_VAR, BEARER_FILE_VAR, AUTH_TOKEN_VAR)):
        return True
    return ci_token.from_job(env, env.get(AUDIENCE_VAR) or "-") is not None


def read_bearer_file(path: Path, origin: str) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{origin} {str(path)!r} cannot be read: {exc}") from None
    if not secret:
        raise InputFileError(f"{origin} {str(path)!r} is empty; it should hold the secret")
    return secret
