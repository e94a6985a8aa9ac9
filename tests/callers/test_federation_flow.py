"""The upstream federation-proof flow: wire format, claims, stable wallets, expiring sessions.

Tokens are verified with PyJWT (a JOSE library independent of the broker's joserfc) against the
JWKS the broker serves.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import jwt as pyjwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.callers.claims import VERIFIER_CLOCK_LAG_SECONDS as LAG
from broker.callers.federation import FederationProof
from broker.errors import Unauthorized
from broker.server.logs import redact
from broker.testing.live import LiveBroker, StartBroker

WALLET = re.compile(r"0x[0-9a-f]{40}")
TAGS = "https://aws.amazon.com/tags"


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker()


def session(broker: LiveBroker, proof: str = "federation-proof") -> dict[str, str]:
    resp = broker.client.post("/session/create", json={"auth_token": proof})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def mint(broker: LiveBroker, bearer: str) -> dict[str, object]:
    resp = broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {bearer}"})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def verify(broker: LiveBroker, token: str) -> dict[str, object]:
    keys = pyjwt.PyJWKClient(f"{broker.url}/.well-known/jwks.json", cache_keys=False)
    key = keys.get_signing_key_from_jwt(token)
    return pyjwt.decode(  # type: ignore[no-any-return]
        token,
        key,
        algorithms=["ES256", "RS256"],
        audience="sts.amazonaws.com",
        issuer=broker.url,
        options={"require": ["iss", "sub", "aud", "iat", "exp", "nbf", "jti"]},
    )


def test_session_create_returns_session_and_wallet(broker: LiveBroker) -> None:
    body = session(broker)
    assert set(body) == {"session", "wallet"}
    assert WALLET.fullmatch(body["wallet"])


def test_same_proof_same_wallet_other_proof_other_wallet(broker: LiveBroker) -> None:
    first, again, other = session(broker, "alice"), session(broker, "alice"), session(broker, "bob")
    assert first["wallet"] == again["wallet"]
    assert first["session"] != again["session"]
    assert other["wallet"] != first["wallet"]


@pytest.mark.parametrize("proof", ["", "invalid"])
def test_rejected_proofs_get_401(broker: LiveBroker, proof: str) -> None:
    resp = broker.client.post("/session/create", json={"auth_token": proof})
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"


def test_mint_response_fields_and_claims(broker: LiveBroker) -> None:
    s = session(broker)
    body = mint(broker, s["session"])
    assert set(body) == {"jwt", "wallet", "expiration", "scope", "sub", "jti", "principal_tags"}
    assert body["wallet"] == s["wallet"] == body["scope"]
    claims = verify(broker, str(body["jwt"]))
    wallet = s["wallet"]
    assert claims["sub"] == f"agentkeys:agent:{wallet}" == body["sub"]
    assert claims["agentkeys_user_wallet"] == wallet
    assert claims["jti"] == body["jti"]
    assert claims["exp"] == body["expiration"]
    for name in ("iat", "nbf", "exp"):
        assert type(claims[name]) is int
    assert claims["exp"] - claims["iat"] == 300 + LAG
    assert abs(claims["iat"] - time.time()) < 60
    assert claims[TAGS] == {
        "principal_tags": {"agentkeys_user_wallet": [wallet], "caller": ["fed"]},
        "transitive_tag_keys": ["agentkeys_user_wallet"],
    }
    assert body["principal_tags"] == claims[TAGS]["principal_tags"]  # type: ignore[index]


def test_token_header_is_alg_kid_typ_only(broker: LiveBroker) -> None:
    token = str(mint(broker, session(broker)["session"])["jwt"])
    header = pyjwt.get_unverified_header(token)
    published = {k["kid"] for k in broker.client.get("/.well-known/jwks.json").json()["keys"]}
    assert set(header) == {"alg", "kid", "typ"}
    assert header["alg"] == "ES256"
    assert header["typ"] == "JWT"
    assert header["kid"] in published


def test_rs256_tokens_verify(live_broker: StartBroker) -> None:
    broker = live_broker(key_algorithm="RS256")
    token = str(mint(broker, session(broker)["session"])["jwt"])
    assert pyjwt.get_unverified_header(token)["alg"] == "RS256"
    assert verify(broker, token)["iss"] == broker.url


def test_ttl_can_be_shortened_and_is_capped(live_broker: StartBroker) -> None:
    broker = live_broker(max_token_ttl_seconds=600)
    auth = {"Authorization": f"Bearer {session(broker)['session']}"}
    short = broker.client.post("/v1/mint-oidc-jwt", headers=auth, json={"ttl_seconds": 120})
    claims = verify(broker, short.json()["jwt"])
    assert claims["exp"] - claims["iat"] == 120 + LAG  # type: ignore[operator]
    long = broker.client.post("/v1/mint-oidc-jwt", headers=auth, json={"ttl_seconds": 900})
    assert (long.status_code, long.json()["error"]) == (400, "ttl_too_long")
    beyond_aws = broker.client.post("/v1/mint-oidc-jwt", headers=auth, json={"ttl_seconds": 3601})
    assert (beyond_aws.status_code, beyond_aws.json()["error"]) == (400, "invalid_request")


def test_session_cannot_mint_another_wallet(broker: LiveBroker) -> None:
    auth = {"Authorization": f"Bearer {session(broker)['session']}"}
    resp = broker.client.post("/v1/mint-oidc-jwt", headers=auth, json={"scope": "0xdeadbeef"})
    assert resp.status_code == 403
    assert resp.json()["error"] == "scope_not_allowed"


def test_sessions_expire() -> None:
    fed = FederationProof(b"k" * 32, session_ttl=60)
    s = fed.create_session("alice", now=1000)
    assert fed.resolve(s.bearer, now=1059).wallet == s.wallet
    with pytest.raises(Unauthorized):
        fed.resolve(s.bearer, now=1060)


def test_tampered_session_is_unauthorized(broker: LiveBroker) -> None:
    bearer = session(broker)["session"]
    tampered = bearer[:-2] + ("AA" if bearer[-2:] != "AA" else "BB")
    resp = broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {tampered}"})
    assert resp.status_code == 401


def test_wallets_survive_a_restart(live_broker: StartBroker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "shared"
    first = session(live_broker(data_dir=data), "carol")["wallet"]
    assert session(live_broker(data_dir=data), "carol")["wallet"] == first


# -- one spelling per session bearer -----------------------------------------------------------

FED = FederationProof(b"k" * 32, session_ttl=3600)
VALID = FED.create_session("alice", now=1000).bearer
BODY = VALID.removeprefix("fps_")


RESPELLINGS = [
    "tilde-inserted",
    "plus-slash-alphabet",
    "one-pad",
    "two-pads",
    "spare-bits-set",
    "space",
    "newline",
    "upper-case-prefix",
    "no-prefix",
]


def _respelled() -> list[str]:
    """Other spellings of VALID, most of which Python's base64 decoder maps to the same bytes."""
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = last[last.index(BODY[-1]) + 1]  # same high bits, a spare low bit set
    return [
        f"fps_{BODY[:10]}~~~{BODY[10:]}",
        "fps_" + BODY.replace("-", "+").replace("_", "/"),
        f"{VALID}=",
        f"{VALID}==",
        f"{VALID[:-1]}{spare}",
        f"fps_ {BODY}",
        f"fps_{BODY}\n",
        f"FPS_{BODY}",
        BODY,
    ]


@pytest.mark.parametrize("bearer", _respelled(), ids=RESPELLINGS)
def test_a_respelled_session_bearer_is_refused(bearer: str) -> None:
    assert FED.resolve(VALID, now=1001).wallet  # the canonical spelling works
    with pytest.raises(Unauthorized):
        FED.resolve(bearer, now=1001)


def _mutations() -> st.SearchStrategy[str]:
    chars = st.characters(codec="utf-8") | st.sampled_from("+/=~.-_ A")
    position = st.integers(min_value=0, max_value=len(VALID))
    insert = st.tuples(position, st.text(chars, min_size=1, max_size=4)).map(
        lambda pt: VALID[: pt[0]] + pt[1] + VALID[pt[0] :]
    )
    delete = st.tuples(position, st.integers(1, 4)).map(
        lambda pn: VALID[: pn[0]] + VALID[pn[0] + pn[1] :]
    )
    replace_ = st.tuples(position, chars).map(
        lambda pc: VALID[: pc[0]] + pc[1] + VALID[pc[0] + 1 :]
    )
    return insert | delete | replace_


@settings(database=None, max_examples=500)  # database=None: no .hypothesis/ left in the tree
@given(mutated=_mutations())
def test_any_mutation_of_a_session_bearer_is_refused(mutated: str) -> None:
    if mutated == VALID:
        return
    with pytest.raises(Unauthorized):
        FED.resolve(mutated, now=1001)


@settings(database=None)
@given(proof=st.text(min_size=1).filter(lambda p: p != "invalid"), around=st.text())
def test_every_working_session_bearer_is_redacted(proof: str, around: str) -> None:
    bearer = FED.create_session(proof, now=1000).bearer
    assert FED.resolve(bearer, now=1001)
    assert bearer not in redact(f"{around}{bearer}{around}")


def test_respelled_bearers_get_the_same_401_over_http(broker: LiveBroker) -> None:
    bearer = session(broker)["session"]
    body = bearer.removeprefix("fps_")
    for other in (f"{bearer}=", "fps_" + body.replace("-", "+").replace("_", "/"), bearer + "~"):
        if other == bearer:
            continue
        resp = broker.client.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {other}"})
        assert (resp.status_code, resp.json()["error"]) == (401, "unauthorized")
    assert mint(broker, bearer)["jwt"]  # the spelling the broker issued still works


def lagging_verifier(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """PyJWT's clock (datetime.now in jwt.api_jwt) runs ``seconds`` behind the broker's."""

    class Lagging(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Lagging:  # type: ignore[override]
            return cls.fromtimestamp(time.time() - seconds, tz=UTC)

    monkeypatch.setattr(pyjwt.api_jwt, "datetime", Lagging)


def test_a_verifier_whose_clock_lags_by_less_than_the_tolerance_accepts_a_fresh_token(
    broker: LiveBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = str(mint(broker, session(broker)["session"])["jwt"])
    lagging_verifier(monkeypatch, LAG - 1)
    claims = verify(broker, token)  # PyJWT, zero leeway: iat and nbf must not be in its future
    assert claims["iat"] == claims["nbf"]


def test_the_clock_lag_tolerance_is_real_a_verifier_lagging_far_more_refuses(
    broker: LiveBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: the monkeypatched clock is what PyJWT judges by.
    token = str(mint(broker, session(broker)["session"])["jwt"])
    lagging_verifier(monkeypatch, LAG + 600)
    with pytest.raises(pyjwt.ImmatureSignatureError):
        verify(broker, token)


def test_a_token_of_the_longest_ttl_keeps_exp_minus_iat_within_the_hour(
    broker: LiveBroker,
) -> None:
    # Backdating iat never pushes a token past STS's "Token too old" hour; exp is as asked.
    auth = {"Authorization": f"Bearer {session(broker)['session']}"}
    before = int(time.time())
    resp = broker.client.post("/v1/mint-oidc-jwt", headers=auth, json={"ttl_seconds": 3600})
    assert resp.status_code == 200, resp.text
    claims = verify(broker, resp.json()["jwt"])
    assert claims["exp"] - claims["iat"] == 3600  # type: ignore[operator]
    assert claims["exp"] >= before + 3600  # type: ignore[operator]
