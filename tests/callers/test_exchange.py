"""Token exchange verification: every refusal names its cause, and nothing else gets a scope.

Pure: tokens signed with a stand-in provider's key (broker/testing/ci_issuer.py), verified with
its public key, no network (tests/server/test_token_exchange.py covers the route over https).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from broker.callers import exchange
from broker.config.trusted_issuers import TrustedIssuer
from broker.errors import InvalidGrant, InvalidRequest
from broker.testing.ci_issuer import DROP, StandInIssuer, new_key

AUD = "https://broker.test"
OWN = "https://broker.example.org"
GH_URL = "https://token.actions.githubusercontent.com"
GL_URL = "https://gitlab.com"


def provider(preset: str, url: str, alg: str = "RS256") -> StandInIssuer:
    key = new_key(alg)
    return StandInIssuer(
        url=url, preset=preset, ca_file=Path("/dev/null"), key=key, alg=alg, published=[key]
    )


@pytest.fixture(scope="module")
def github() -> StandInIssuer:
    return provider("github-actions", GH_URL)


@pytest.fixture(scope="module")
def gitlab() -> StandInIssuer:
    return provider("gitlab", GL_URL)


GH_TABLE = TrustedIssuer(
    preset="github-actions",
    audience=AUD,
    conditions={"repository": "acme/*", "event_name": "pull_request"},
    scope_template="gh/{repository}/pr-{pr}/run-{run_id}-{run_attempt}",
)
GL_TABLE = TrustedIssuer(
    preset="gitlab",
    audience=AUD,
    conditions={"project_path": "acme/*"},
    scope_template="gl/{project_path}/-/mr-{pr}/pipeline-{pipeline_id}",
)
TABLES = [GH_TABLE, GL_TABLE]


def exchanged(issuer: StandInIssuer, token: str, now: int | None = None) -> exchange.Grant:
    subject = exchange.read(token)
    table = exchange.trusted_table(subject, TABLES, OWN)
    alg, kid = exchange.signing_alg(subject)
    assert kid == issuer.key.thumbprint()
    exchange.verify_signature(subject, issuer.key, alg)
    return exchange.grant_for(subject, table, now or int(time.time()))


def test_a_github_pull_request_job_gets_its_run_scope(github: StandInIssuer) -> None:
    grant = exchanged(github, github.token(AUD, run_id="34", run_attempt="2"))
    assert grant.scope == "gh/acme/app/pr-12/run-34-2"
    assert grant.used == {
        "repository": "acme/app",
        "ref": "refs/pull/12/merge",
        "run_id": "34",
        "run_attempt": "2",
    }
    assert grant.max_ttl == 900


def test_a_gitlab_merge_request_job_gets_its_pipeline_scope(gitlab: StandInIssuer) -> None:
    grant = exchanged(gitlab, gitlab.token(AUD))
    assert grant.scope == "gl/acme/app/-/mr-7/pipeline-574"


def test_an_es256_provider_key_is_accepted() -> None:
    es = provider("github-actions", GH_URL, alg="ES256")
    assert exchanged(es, es.token(AUD)).scope.startswith("gh/acme/app/pr-12/")


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# Times are taken when the module loads: margins of a day keep them true however late a case runs.
REFUSALS = {
    "wrong aud": ({"aud": "https://other.example"}, "aud"),
    "aud list of two": ({"aud": [AUD, "https://other.example"]}, "aud"),
    "wrong iss": ({"iss": "https://token.actions.example.net"}, "not trusted"),
    "self-issued": ({"iss": OWN}, "issued by this broker"),
    "expired": ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 400}, "expired"),
    "future nbf": ({"nbf": int(time.time()) + 86400}, "not valid yet"),
    "future iat": ({"iat": int(time.time()) + 86400}, "future"),
    "too old": ({"iat": int(time.time()) - 1000, "exp": int(time.time()) + 86400}, "old"),
    "exp not an integer": ({"exp": "1900000000"}, "exp is missing or not an integer"),
    "conditions not met": ({"event_name": "push"}, "event_name"),
    "another repository": ({"repository": "evil/app"}, "repository = 'evil/app'"),
    "lookalike owner": ({"repository": "acme-evil/app"}, "does not match"),
    "missing template claim": ({"run_attempt": DROP}, "lacks the claims run_attempt"),
    "missing required claim": ({"jti": DROP}, "lacks the claims jti"),
    "no pull request in ref": ({"ref": "refs/heads/main"}, "names no pull/merge request"),
    "unsafe claim": ({"run_id": "../../x"}, "not safe"),
    "run id not a number": ({"run_attempt": "1-2"}, "is not a number"),
    "repository not owner/name": ({"repository": "acme/app/run-1-1"}, "is not 2"),
    "claim not text": ({"run_id": 34}, "missing or not text"),
}


@pytest.mark.parametrize(("overrides", "says"), REFUSALS.values(), ids=REFUSALS.keys())
def test_each_refusal_is_invalid_grant_naming_its_cause(
    github: StandInIssuer, overrides: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidGrant, match=says):
        exchanged(github, github.token(AUD, **overrides))


def test_a_fork_merge_request_pipeline_is_refused(gitlab: StandInIssuer) -> None:
    # In fork MR pipelines GitLab's project claims name the fork (docs.gitlab.com, id_tokens).
    token = gitlab.token(
        AUD, project_path="mallory/app", namespace_path="mallory", project_id="999"
    )
    with pytest.raises(InvalidGrant, match="project_path = 'mallory/app' does not match"):
        exchanged(gitlab, token)


def test_a_gitlab_path_with_a_dash_segment_is_refused(gitlab: StandInIssuer) -> None:
    # '-' ends a variable-depth path in the scope (gl/<path>/-/...); GitLab reserves it.
    with pytest.raises(InvalidGrant, match="holds a '-' segment"):
        exchanged(gitlab, gitlab.token(AUD, project_path="acme/-/x"))


def test_alg_none_is_refused(github: StandInIssuer) -> None:
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(github.claims(AUD))}."
    with pytest.raises(InvalidGrant, match="alg 'none' is not accepted"):
        exchanged(github, token)


def test_hs256_signed_with_the_providers_public_key_is_refused(github: StandInIssuer) -> None:
    # The classic confusion: the public key's PEM as an HMAC secret.
    assert isinstance(github.key, RSAKey)
    secret = github.key.as_pem(private=False)
    head = b64({"alg": "HS256", "kid": github.key.thumbprint(), "typ": "JWT"})
    body = b64(github.claims(AUD))
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    token = f"{head}.{body}.{b64(mac)}"
    subject = exchange.read(token)
    with pytest.raises(InvalidGrant, match="alg 'HS256' is not accepted"):
        exchange.signing_alg(subject)
    # Even handed the key, verification with HS256 is impossible.
    with pytest.raises(InvalidGrant, match="not a key for HS256"):
        exchange.verify_signature(subject, github.key, "HS256")


def test_a_token_signed_by_another_key_is_refused(github: StandInIssuer) -> None:
    stranger = new_key("RS256")
    token = github.token(AUD, key=stranger, header={"kid": github.key.thumbprint()})
    with pytest.raises(InvalidGrant, match="signature does not verify"):
        exchanged(github, token)


def test_a_key_of_the_wrong_type_for_the_alg_is_refused(github: StandInIssuer) -> None:
    subject = exchange.read(github.token(AUD))
    with pytest.raises(InvalidGrant, match="not a key for ES256"):
        exchange.verify_signature(subject, github.key, "ES256")


def test_an_oversized_token_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="at most"):
        exchange.read("a" * (exchange.MAX_SUBJECT_TOKEN + 1))


def test_junk_and_repeated_claims_are_refused(github: StandInIssuer) -> None:
    with pytest.raises(InvalidGrant, match="not a signed JWT"):
        exchange.read("not.a.jwt")
    head = b64({"alg": "RS256", "kid": "k"})
    doubled = b'{"iss": "https://token.actions.githubusercontent.com", "iss": "x"}'
    with pytest.raises(InvalidGrant, match="repeats iss"):
        exchange.read(f"{head}.{b64(doubled)}.sig")


def test_the_audit_keeps_who_and_the_claims_not_the_token(github: StandInIssuer) -> None:
    token = github.token(AUD, jti="j-1")
    subject = exchange.read(token)
    grant = exchanged(github, token)
    shown = json.loads(subject.audit(grant.used, verified=True))
    assert shown == {
        "iss": GH_URL,
        "sub": "repo:acme/app:pull_request",
        "jti": "j-1",
        "claims": grant.used,
        "verified": True,
    }
    assert token.split(".")[2] not in subject.audit(grant.used, verified=True)
