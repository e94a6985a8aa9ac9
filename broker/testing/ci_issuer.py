"""A stand-in CI provider for token-exchange tests: GitHub Actions or GitLab, over https on loopback.

It serves ``/.well-known/openid-configuration`` and a JWKS over TLS (a trustme CA the test
passes in; ``ca_file`` is that CA's certificate for the ``[[trusted_issuers]]`` table) and signs
job tokens with the provider's documented claim set and key type (both sign RS256; ``alg="ES256"``
gives a P-256 key instead). The issuer URL is ``https://127.0.0.1:<port>``: a trusted issuer may
have a port, and the broker fetches loopback addresses only for a loopback issuer.

    with stand_in_issuer(tls_ca, preset="github-actions") as issuer:
        settings = make_settings(trusted_issuers=[issuer.table(audience=AUD)])
        token = issuer.token(audience=AUD, ref="refs/pull/12/merge")
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from broker.sts.oidc import DISCOVERY_PATH, JWKS_PATH

if TYPE_CHECKING:
    import trustme

DROP = None  # a claim override of None removes the claim


def github_claims(now: int) -> dict[str, Any]:
    """A pull-request job's token, as docs.github.com's example shows the claims."""
    return {
        "jti": str(uuid.uuid4()),
        "sub": "repo:acme/app:pull_request",
        "ref": "refs/pull/12/merge",
        "sha": "d0c0ffee" * 5,
        "repository": "acme/app",
        "repository_owner": "acme",
        "repository_owner_id": "65",
        "repository_id": "74",
        "repository_visibility": "private",
        "actor_id": "12",
        "actor": "octocat",
        "run_id": "3401",
        "run_number": "10",
        "run_attempt": "1",
        "runner_environment": "github-hosted",
        "workflow": "ci",
        "workflow_ref": "acme/app/.github/workflows/ci.yml@refs/pull/12/merge",
        "workflow_sha": "d0c0ffee" * 5,
        "job_workflow_ref": "acme/app/.github/workflows/ci.yml@refs/pull/12/merge",
        "job_workflow_sha": "d0c0ffee" * 5,
        "head_ref": "feature",
        "base_ref": "main",
        "event_name": "pull_request",
        "ref_type": "branch",
        "ref_protected": "false",
        "nbf": now - 5,
        "iat": now,
        "exp": now + 300,
    }


def gitlab_claims(now: int) -> dict[str, Any]:
    """A merge-request pipeline's job token, as docs.gitlab.com's token payload lists them."""
    return {
        "namespace_id": "72",
        "namespace_path": "acme",
        "project_id": "20",
        "project_path": "acme/app",
        "user_id": "1",
        "user_login": "sample-user",
        "user_email": "sample-user@example.com",
        "user_access_level": "developer",
        "pipeline_id": "574",
        "pipeline_source": "merge_request_event",
        "job_id": "302",
        "ref": "feature",
        "ref_type": "branch",
        "ref_path": "refs/merge-requests/7/head",
        "ref_protected": "false",
        "runner_id": 1,
        "runner_environment": "gitlab-hosted",
        "sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "project_visibility": "private",
        "ci_config_ref_uri": "gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/feature",
        "ci_config_sha": "714a629c0b401fdce83e847fc9589983fc6f46bc",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now - 5,
        "exp": now + 3600,
        "sub": "project_path:acme/app:ref_type:branch:ref:feature",
    }


CLAIMS = {"github-actions": github_claims, "gitlab": gitlab_claims}
OWNER_CONDITION = {"github-actions": {"repository": "acme/*"}, "gitlab": {"project_path": "acme/*"}}


@dataclass
class StandInIssuer:
    url: str
    preset: str
    ca_file: Path
    key: RSAKey | ECKey
    alg: str
    published: list[RSAKey | ECKey] = field(default_factory=list)
    fetches: dict[str, int] = field(default_factory=dict)

    @property
    def kid(self) -> str:
        return self.key.thumbprint()

    def claims(self, audience: str, **overrides: Any) -> dict[str, Any]:
        claims = CLAIMS[self.preset](int(time.time())) | {"iss": self.url, "aud": audience}
        for name, value in overrides.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def token(
        self,
        audience: str,
        *,
        header: dict[str, Any] | None = None,
        key: RSAKey | ECKey | None = None,
        **overrides: Any,
    ) -> str:
        """A signed job token; ``key`` signs with another key (its kid unless ``header`` says)."""
        signer = key or self.key
        alg = "RS256" if isinstance(signer, RSAKey) else "ES256"
        head = {"alg": alg, "kid": signer.thumbprint(), "typ": "JWT"} | (header or {})
        return jwt.encode(head, self.claims(audience, **overrides), signer, algorithms=[alg])

    def table(self, audience: str, **overrides: Any) -> dict[str, Any]:
        """A ``[[trusted_issuers]]`` table for this issuer, owner pinned to ``acme``."""
        table: dict[str, Any] = {
            "preset": self.preset,
            "issuer": self.url,
            "audience": audience,
            "conditions": OWNER_CONDITION[self.preset],
            "ca_file": str(self.ca_file),
        }
        return table | overrides

    def jwks(self) -> dict[str, Any]:
        keys = []
        for key in self.published:
            member = key.as_dict(private=False)
            member |= {"kid": key.thumbprint(), "use": "sig"}
            member["alg"] = "RS256" if isinstance(key, RSAKey) else "ES256"
            keys.append(member)
        return {"keys": keys}


def new_key(alg: str) -> RSAKey | ECKey:
    if alg == "RS256":
        return RSAKey.generate_key(2048, private=True)
    return ECKey.generate_key("P-256", private=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        issuer = self.server.issuer
        issuer.fetches[self.path] = issuer.fetches.get(self.path, 0) + 1
        if self.path == DISCOVERY_PATH:
            doc: dict[str, Any] = {
                "issuer": issuer.url,
                "jwks_uri": issuer.url + JWKS_PATH,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public", "pairwise"],
                "id_token_signing_alg_values_supported": [issuer.alg],
            }
        elif self.path == JWKS_PATH:
            doc = issuer.jwks()
        else:
            self.send_error(404)
            return
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    issuer: StandInIssuer


@contextlib.contextmanager
def stand_in_issuer(
    ca: trustme.CA, *, preset: str = "github-actions", alg: str = "RS256"
) -> Iterator[StandInIssuer]:
    """Serve a stand-in ``preset`` provider on a free loopback port until the block ends."""
    import ssl

    server = _Server(("127.0.0.1", 0), _Handler)
    with tempfile.TemporaryDirectory(prefix="ci-issuer-") as tmp:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        key = new_key(alg)
        url = f"https://127.0.0.1:{server.server_address[1]}"
        server.issuer = StandInIssuer(
            url=url, preset=preset, ca_file=ca_file, key=key, alg=alg, published=[key]
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.issuer
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)


@dataclass
class TokenService:
    """GitHub's job-token service as a job sees it: the two variables, and what was asked."""

    env: dict[str, str]  # ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN
    requests: list[str] = field(default_factory=list)  # the audience of each request
    failures: list[int] = field(default_factory=list)  # statuses to answer first, in order


@contextlib.contextmanager
def github_token_service(
    issuer: StandInIssuer, *, failures: list[int] | None = None, **claims: Any
) -> Iterator[TokenService]:
    """A loopback stand-in for ``$ACTIONS_ID_TOKEN_REQUEST_URL``: GET ``…&audience=A`` with the
    request token as bearer answers ``{"value": <issuer's job token for A>}`` (``claims``
    override the token's); ``failures`` are answered first (e.g. ``[503, 503]``)."""
    from urllib.parse import parse_qs, urlsplit

    secret = uuid.uuid4().hex
    service = TokenService(env={}, failures=list(failures or []))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            audience = query.get("audience", [""])[0]
            service.requests.append(audience)
            if self.headers.get("Authorization") != f"Bearer {secret}":
                status, doc = 401, {"message": "bad request token"}
            elif service.failures:
                status, doc = service.failures.pop(0), {"message": "try again"}
            else:
                status, doc = 200, {"value": issuer.token(audience, **claims)}
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0"
    service.env = {"ACTIONS_ID_TOKEN_REQUEST_URL": url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": secret}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
