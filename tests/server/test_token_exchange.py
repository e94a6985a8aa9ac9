"""POST /v1/token-exchange against a live broker and a stand-in CI provider over https.

The provider (broker/testing/ci_issuer.py) serves discovery and JWKS over TLS on loopback; the
broker trusts it through ``ca_file``. The verification rules themselves are in
tests/callers/test_exchange.py; here: the wire format, mounting, audit, metrics, limits.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import trustme

from broker.store import open_store
from broker.testing.ci_issuer import StandInIssuer, new_key, stand_in_issuer
from broker.testing.live import LiveBroker, StartBroker, free_socket, wait_until
from tests.server.test_audit import audit_rows

AUD = "https://broker.test"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
TEMPLATE = "gh/{repository}/pr-{pr}/run-{run_id}-{run_attempt}"


@pytest.fixture(scope="module")
def github(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca, preset="github-actions") as issuer:
        yield issuer


@pytest.fixture
def broker(live_broker: StartBroker, github: StandInIssuer) -> LiveBroker:
    return live_broker(trusted_issuers=[github.table(AUD, scope_template=TEMPLATE)])


def form(token: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": GRANT,
        "subject_token": token,
        "subject_token_type": JWT_TYPE,
    } | extra


def exchange(broker: LiveBroker, token: str, **extra: str) -> Any:
    return broker.client.post("/v1/token-exchange", data=form(token, **extra))


def test_a_job_token_becomes_a_broker_token_for_its_run_scope(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    resp = exchange(broker, github.token(AUD, run_id="34", run_attempt="1"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    scope = "gh/acme/app/pr-12/run-34-1"
    assert body["issued_token_type"] == JWT_TYPE
    assert body["token_type"] == "N_A"
    assert body["scope"] == scope
    assert body["access_token"] == body["jwt"]
    assert 0 < body["expires_in"] <= 300
    tags = broker.settings.scope_tag
    assert body["principal_tags"] == {tags: [scope], "caller": ["ci"]}
    claims = pyjwt.decode(body["jwt"], options={"verify_signature": False})
    assert claims["iss"] == broker.url
    assert claims["aud"] == "sts.amazonaws.com"
    assert claims[tags] == scope
    assert set(body) == {
        "access_token",
        "issued_token_type",
        "token_type",
        "expires_in",
        "scope",
        "jwt",
        "expiration",
        "sub",
        "jti",
        "principal_tags",
    }


def test_json_is_accepted_too(broker: LiveBroker, github: StandInIssuer) -> None:
    resp = broker.client.post("/v1/token-exchange", json=form(github.token(AUD)))
    assert resp.status_code == 200, resp.text


def test_a_narrower_scope_may_be_asked_a_wider_or_other_one_not(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    token = github.token(AUD, run_id="7", run_attempt="1")
    below = exchange(broker, token, scope="gh/acme/app/pr-12/run-7-1/unit")
    assert below.json()["scope"] == "gh/acme/app/pr-12/run-7-1/unit"
    for other in ("gh/acme/app/pr-12", "gh/acme/other/pr-12/run-7-1", "ci/acme/x"):
        resp = exchange(broker, token, scope=other)
        assert (resp.status_code, resp.json()["error"]) == (400, "invalid_scope")


def test_the_route_exists_only_when_issuers_are_trusted(
    live_broker: StartBroker, github: StandInIssuer
) -> None:
    plain = live_broker()
    assert plain.client.post("/v1/token-exchange", data=form("x")).status_code == 404
    assert "/v1/token-exchange" not in plain.client.get("/openapi.json").json()["paths"]
    only = live_broker(federation_proof=False, trusted_issuers=[github.table(AUD)])
    paths = only.client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {"/v1/token-exchange"}
    assert "/v1/mint-oidc-jwt" not in paths  # no bearer kind is on
    body = paths["/v1/token-exchange"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/x-www-form-urlencoded", "application/json"}
    assert only.client.post("/v1/mint-oidc-jwt").status_code == 404
    assert exchange(only, github.token(AUD)).status_code == 200


REQUEST_ERRORS = {
    "wrong grant type": ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    "wrong token type": ({"subject_token_type": "urn:x"}, "invalid_request"),
    "wrong requested type": ({"requested_token_type": "urn:x"}, "invalid_request"),
    "unknown field": ({"client_secret": "x"}, "invalid_request"),
    "ttl above the issuer's cap": ({"ttl_seconds": "3600"}, "ttl_too_long"),
}


@pytest.mark.parametrize(("extra", "code"), REQUEST_ERRORS.values(), ids=REQUEST_ERRORS.keys())
def test_bad_requests_get_rfc_6749_codes_with_a_message(
    broker: LiveBroker, github: StandInIssuer, extra: dict[str, str], code: str
) -> None:
    resp = exchange(broker, github.token(AUD), **extra)
    assert (resp.status_code, resp.json()["error"]) == (400, code)
    assert resp.json()["message"]


def test_missing_and_repeated_parameters_are_invalid_request(broker: LiveBroker) -> None:
    post = broker.client.post
    missing = post("/v1/token-exchange", data={"grant_type": GRANT})
    assert missing.json() == {
        "error": "invalid_request",
        "message": "field 'subject_token' is required",
    }
    repeated = post(
        "/v1/token-exchange",
        content=f"grant_type={GRANT}&grant_type={GRANT}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert repeated.json()["error"] == "invalid_request"
    assert "more than once" in repeated.json()["message"]
    other = post("/v1/token-exchange", content=b"x", headers={"content-type": "text/plain"})
    assert other.status_code == 415


def test_refusals_over_http_are_invalid_grant(broker: LiveBroker, github: StandInIssuer) -> None:
    wrong_aud = exchange(broker, github.token("https://elsewhere.test"))
    assert (wrong_aud.status_code, wrong_aud.json()["error"]) == (400, "invalid_grant")
    assert "audience" in wrong_aud.json()["message"]
    other_repo = exchange(broker, github.token(AUD, repository="evil/app"))
    assert other_repo.json()["error"] == "invalid_grant"


def test_an_unknown_kid_is_refused_after_one_fetch(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    from broker.testing.ci_issuer import new_key

    assert exchange(broker, github.token(AUD)).status_code == 200
    before = dict(github.fetches)
    stranger = new_key("RS256")
    for _ in range(3):
        resp = exchange(broker, github.token(AUD, key=stranger))
        assert resp.json()["error"] == "invalid_grant"
        assert "is not published by" in resp.json()["message"]
    # The keys were fetched when the first token came; junk kids within a minute add nothing.
    assert github.fetches == before


def test_the_brokers_own_token_is_refused(live_broker: StartBroker, github: StandInIssuer) -> None:
    broker = live_broker(trusted_issuers=[github.table(AUD)])
    session = broker.client.post("/session/create", json={"auth_token": "a"}).json()["session"]
    own = broker.client.post(
        "/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {session}"}
    ).json()["jwt"]
    resp = exchange(broker, own)
    assert resp.json()["error"] == "invalid_grant"
    assert "issued by this broker" in resp.json()["message"]


def test_an_oversized_token_is_invalid_request(broker: LiveBroker) -> None:
    resp = exchange(broker, "a" * 13000)
    assert resp.json()["error"] == "invalid_request"


def test_an_unreachable_issuer_is_503_issuer_unavailable(
    live_broker: StartBroker, github: StandInIssuer
) -> None:
    with free_socket() as closed:  # bound, never listening: connections are refused
        port = closed.getsockname()[1]
        table = github.table(AUD, issuer=f"https://127.0.0.1:{port}")
        broker = live_broker(trusted_issuers=[table])
        resp = exchange(broker, github.token(AUD, iss=table["issuer"]))
    assert (resp.status_code, resp.json()["error"]) == (503, "issuer_unavailable")
    assert "retry" in resp.json()["message"]
    # Any token naming that issuer gets this far unverified: counted, not a row each.
    data = broker.settings.data_dir

    def counted() -> list[str]:
        with contextlib.closing(open_store(data)) as store:
            return [r.error for r in store.read_refusals()]

    wait_until(lambda: counted() == ["issuer_unavailable"])
    assert audit_rows(data) == []


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": 1}, None])
def test_a_header_alg_that_is_no_string_is_invalid_grant(
    broker: LiveBroker, github: StandInIssuer, alg: object
) -> None:
    def part(doc: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': alg, 'kid': github.kid})}.{part(github.claims(AUD))}.c2ln"
    resp = exchange(broker, token)
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_grant")


def test_unverified_tokens_are_counted_not_recorded(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    # Claims nobody signed are anyone's words: a flood of them must not grow the audit table.
    forged = github.token(AUD, key=new_key("RS256"), header={"kid": github.kid}, jti="x" * 300)
    untrusted = github.token(AUD, iss="https://elsewhere.example")
    for token in (forged, untrusted):
        assert exchange(broker, token).json()["error"] == "invalid_grant"
    data = broker.settings.data_dir

    def counted() -> list[str]:
        with contextlib.closing(open_store(data)) as store:
            return [r.error for r in store.read_refusals()]

    wait_until(lambda: counted() == ["invalid_grant"])
    assert audit_rows(data) == []


def test_every_exchange_is_audited_with_the_subject(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    ok = exchange(broker, github.token(AUD, jti="job-ok", run_id="5")).json()
    exchange(broker, github.token(AUD, jti="job-bad", repository="evil/app"))
    data: Path = broker.settings.data_dir
    wait_until(lambda: len(audit_rows(data)) == 2)
    good, bad = audit_rows(data)
    assert (good["caller_kind"], good["caller_id"], good["result"]) == (
        "exchange",
        github.url,
        "ok",
    )
    assert good["jti"] == ok["jti"]
    assert good["scope"] == ok["scope"]
    assert json.loads(good["subject"]) == {
        "iss": github.url,
        "sub": "repo:acme/app:pull_request",
        "jti": "job-ok",
        "claims": {
            "repository": "acme/app",
            "ref": "refs/pull/12/merge",
            "run_id": "5",
            "run_attempt": "1",
        },
        "verified": True,
    }
    assert bad["result"] == "invalid_grant"
    assert json.loads(bad["subject"])["jti"] == "job-bad"
    refused = json.loads(bad["subject"])
    assert refused["verified"] is False
    # What was refused is on record: the claims the table looks at, as the token had them.
    assert refused["claims"]["repository"] == "evil/app"
    assert refused["claims"]["ref"] == "refs/pull/12/merge"


def test_metrics_count_exchanges_by_issuer_and_result(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    exchange(broker, github.token(AUD))
    exchange(broker, github.token(AUD, iss="https://gitlab.example.net"))
    text = broker.client.get("/metrics").text

    def count(issuer: str, result: str) -> float:
        sample = f'broker_token_exchange_total{{issuer="{issuer}",result="{result}"}} '
        found = re.search(re.escape(sample) + r"([0-9.]+)", text)
        assert found, sample
        return float(found.group(1))

    assert count(github.url, "ok") == 1
    assert count("untrusted", "invalid_grant") == 1


def test_refused_exchanges_spend_the_addresss_failure_budget(
    live_broker: StartBroker, github: StandInIssuer
) -> None:
    broker = live_broker(trusted_issuers=[github.table(AUD)], unauth_burst=2)
    bad = github.token(AUD, repository="evil/app")
    assert [exchange(broker, bad).status_code for _ in range(3)] == [400, 400, 429]
    limited = exchange(broker, github.token(AUD))  # the address is out of failures, not of mints
    assert limited.status_code == 200


def test_failures_at_both_endpoints_drain_one_address_budget(
    live_broker: StartBroker, github: StandInIssuer
) -> None:
    # Two endpoints must not mean twice the guesses: one failure budget per address.
    broker = live_broker(
        trusted_issuers=[github.table(AUD)], unauth_burst=2, unauth_rate_per_second=0.01
    )
    bad = github.token(AUD, repository="evil/app")
    assert [exchange(broker, bad).status_code for _ in range(2)] == [400, 400]
    guess = broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": "Bearer fps_guess"})
    assert guess.status_code == 429


def test_the_audit_command_shows_the_subject_as_an_object(
    broker: LiveBroker, github: StandInIssuer
) -> None:
    from click.testing import CliRunner

    from broker.main import main

    exchange(broker, github.token(AUD, jti="job-cli"))
    data = broker.settings.data_dir
    wait_until(lambda: len(audit_rows(data)) == 1)
    result = CliRunner().invoke(main, ["audit", "--json"], env={"BROKER_DATA_DIR": str(data)})
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)["records"]
    assert record["caller_kind"] == "exchange"
    assert record["subject"]["jti"] == "job-cli"
