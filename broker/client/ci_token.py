"""The CI job's own OIDC token, which the broker exchanges (RFC 8693) so the job needs no secret.

GitHub Actions: a job with ``permissions: id-token: write`` has ``ACTIONS_ID_TOKEN_REQUEST_URL``
and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``; a GET of the URL plus ``&audience=…`` with that bearer
answers ``{"value": "<JWT>"}``. It is fetched anew for every exchange (the token lives minutes),
with the retries of GitHub's own toolkit (@actions/core ``getIDToken`` through
@actions/http-client: up to 10 retries of a GET answered 502, 503 or 504, backing off
5 ms x 2^n, n capped at 10; other answers and connection errors are final).

GitLab: the job declares ``id_tokens: TEST_BROKER_ID_TOKEN: aud: <broker URL>``; GitLab puts the
JWT in that variable (or a file the job writes). Read anew for every exchange.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from broker.errors import BrokerUnavailable, ConfigError, InputFileError

REQUEST_URL_VAR = "ACTIONS_ID_TOKEN_REQUEST_URL"
REQUEST_TOKEN_VAR = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - a variable's name
ID_TOKEN_VAR = "TEST_BROKER_ID_TOKEN"  # noqa: S105 - the GitLab id_tokens name clients read
AUDIENCE_VAR = "TEST_BROKER_AUDIENCE"
# @actions/http-client: HttpResponseRetryCodes, maxRetries (getIDToken passes 10),
# ExponentialBackoffTimeSlice (ms) and ExponentialBackoffCeiling.
RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRIES = 10
BACKOFF_SLICE = 0.005
BACKOFF_CEILING = 10
TOKEN_SERVICE_TIMEOUT = 30.0


def backoff(retry: int) -> float:
    """Seconds to wait before retry number ``retry`` (1-based), as @actions/http-client does."""
    return float(BACKOFF_SLICE * 2 ** min(BACKOFF_CEILING, retry))


@dataclass(frozen=True)
class GitHubActions:
    """The job token from GitHub's token service, for ``audience``."""

    request_url: str
    request_token: str = field(repr=False)
    audience: str
    transport: httpx.BaseTransport | None = field(default=None, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def fetch(self) -> str:
        url = f"{self.request_url}&audience={quote(self.audience, safe='')}"
        headers = {"Authorization": f"Bearer {self.request_token}", "Accept": "application/json"}
        with httpx.Client(timeout=TOKEN_SERVICE_TIMEOUT, transport=self.transport) as http:
            for retry in range(MAX_RETRIES + 1):
                if retry:
                    self.sleep(backoff(retry))
                try:
                    response = http.get(url, headers=headers)
                except httpx.TransportError as exc:
                    raise BrokerUnavailable(
                        f"cannot reach GitHub's token service ({REQUEST_URL_VAR}): {exc}"
                    ) from None
                if response.status_code not in RETRY_STATUSES:
                    break
        if response.status_code != 200:
            raise BrokerUnavailable(
                f"GitHub's token service answered {response.status_code}; does the job have "
                "'permissions: id-token: write'?"
            )
        try:
            value = response.json()["value"]
        except (ValueError, KeyError, TypeError):
            value = None
        if not isinstance(value, str) or not value:
            raise BrokerUnavailable("GitHub's token service answered no 'value'")
        return value


@dataclass(frozen=True)
class TokenFile:
    path: Path

    def fetch(self) -> str:
        try:
            value = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"--subject-token-file {str(self.path)!r}: {exc}") from None
        if not value:
            raise InputFileError(f"--subject-token-file {str(self.path)!r} is empty")
        return value


@dataclass(frozen=True)
class TokenEnv:
    name: str
    environ: Mapping[str, str] = field(
        default_factory=lambda: os.environ, repr=False, compare=False
    )

    def fetch(self) -> str:
        value = self.environ.get(self.name, "").strip()
        if not value:
            raise ConfigError(
                f"${self.name} is empty or unset; declare it under the job's id_tokens "
                f"(GitLab: id_tokens: {self.name}: aud: <the broker's audience>)"
            )
        return value


SubjectSource = GitHubActions | TokenFile | TokenEnv


def github_actions(
    environ: Mapping[str, str], audience: str | None, *, required: bool = True
) -> GitHubActions | None:
    """GitHub's token service from the job's variables; None (or ConfigError) outside one."""
    url, token = environ.get(REQUEST_URL_VAR), environ.get(REQUEST_TOKEN_VAR)
    if not url or not token:
        if not required:
            return None
        raise ConfigError(
            f"--github-actions needs {REQUEST_URL_VAR} and {REQUEST_TOKEN_VAR}: give the job "
            "'permissions: id-token: write'"
        )
    if not audience:
        raise ConfigError(f"no audience for the job token: pass --audience or set {AUDIENCE_VAR}")
    return GitHubActions(request_url=url, request_token=token, audience=audience)


def from_job(environ: Mapping[str, str], audience: str | None) -> SubjectSource | None:
    """The job token this CI job offers without being asked (GitHub, then GitLab), if any."""
    found = github_actions(environ, audience, required=False)
    if found is not None:
        return found
    if environ.get(ID_TOKEN_VAR):
        return TokenEnv(ID_TOKEN_VAR, environ)
    return None
