"""Property tests: no caller can mint a scope that overlaps another caller's allowance or a
federation wallet, and every token that is minted passes the STS rule set."""

from __future__ import annotations

from pathlib import Path

import jwt as pyjwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.callers import credentials
from broker.callers.federation import FederationProof
from broker.callers.gate import Gate
from broker.callers.scopes import WALLET
from broker.config import load_settings
from broker.errors import BrokerError
from broker.server.keyring import KeyRing
from broker.server.mint import Minter
from broker.store import MemoryStore
from broker.store.keys import KeyStore
from broker.sts import token_rules as sts_rules

TAGS = "https://aws.amazon.com/tags"

NOW = 1_800_000_000
names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,8}", fullmatch=True)
segment = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:=+@-]{1,6}", fullmatch=True), st.sampled_from(["..", ".", ""])
)
scopes = st.one_of(
    st.lists(segment, min_size=1, max_size=5).map("/".join),
    st.builds(
        lambda k, n, rest: "/".join([k, n, *rest]),
        st.sampled_from(["ci", "dev"]),
        names,
        st.lists(segment, max_size=3),
    ),
    st.just("0x" + "ab" * 20),
)


def overlaps(scope: str, prefix: str) -> bool:
    """S3 prefixes ``a/`` and ``b/`` overlap when one scope is a segment prefix of the other."""
    return scope == prefix or scope.startswith(prefix + "/") or prefix.startswith(scope + "/")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds_names=st.lists(
        st.tuples(st.sampled_from(["ci", "dev"]), names), min_size=2, max_size=4, unique=True
    ),
    requests=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 3),
            st.lists(segment, max_size=2),
            st.one_of(st.none(), scopes),
            st.booleans(),
        ),
        max_size=12,
    ),
    # A credential row whose extra tags try to set the scope tag (the CLI refuses these).
    sneaky=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_minted_scopes_stay_inside_their_own_caller(
    tmp_path_factory, kinds_names, requests, sneaky
) -> None:  # type: ignore[no-untyped-def]
    data: Path = tmp_path_factory.mktemp("iso")
    cfg = load_settings(environ={}, data_dir=data, credential_minting=True)
    ks = KeyStore.for_settings(cfg)
    ks.ensure(NOW)
    minter = Minter(cfg, KeyRing(ks, NOW))
    store = MemoryStore()  # the contract tests hold it to SQLite's behaviour; it is faster
    fed = FederationProof(b"s" * 32, 3600)
    callers = Gate(cfg, fed, store)
    secrets = []
    for i, (kind, name) in enumerate(kinds_names):
        info, secret = credentials.add(
            store,
            kind=kind,
            name=name,
            max_ttl=600,
            extra_tags={cfg.scope_tag: "0x" + "ab" * 20} if sneaky[i] else {},
            now=NOW,
        )
        secrets.append((info, secret))
    for index, target, rest, raw, aimed in requests:
        info, secret = secrets[index % len(secrets)]
        # Half the requests aim at some caller's home (often another's): the interesting case.
        aim, _ = secrets[target % len(secrets)]
        scope = "/".join([aim.kind, aim.name, *rest]) if aimed else raw
        try:
            who = callers.authenticate(secret, NOW)
            req = callers.authorize(who, scope)
            result = minter.mint(req, ttl=None, now=NOW)
        except BrokerError:
            continue
        home = f"{info.kind}/{info.name}"
        assert overlaps(result.scope, home)
        assert not home.startswith(result.scope + "/")
        for other, _ in secrets:
            if other.id != info.id:
                assert not overlaps(result.scope, f"{other.kind}/{other.name}")
        assert not WALLET.fullmatch(result.scope.split("/")[0])
        header = {"alg": "ES256", "kid": result.kid, "typ": "JWT"}
        claims = pyjwt.decode(result.jwt, options={"verify_signature": False})
        findings = sts_rules.check_token(
            header,
            claims,
            token_length=len(result.jwt),
            issuer=cfg.oidc_issuer,
            audiences=[cfg.audience],
            now=NOW,
        )
        assert findings == []
        assert claims[TAGS]["principal_tags"][cfg.scope_tag] == [result.scope]
