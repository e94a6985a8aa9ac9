"""Property tests: no caller can mint a scope that overlaps another caller's allowance or a
federation wallet, no exchanged CI job token's scope overlaps another project's or caller's, and
every token that is minted passes the STS rule set."""

from __future__ import annotations

from pathlib import Path

import jwt as pyjwt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.callers import credentials, exchange
from broker.callers.exchange import SubjectToken
from broker.callers.federation import FederationProof
from broker.callers.gate import Gate
from broker.callers.scopes import WALLET, check_scope
from broker.config import load_settings
from broker.config.trusted_issuers import TrustedIssuer
from broker.errors import BrokerError, InvalidGrant
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


# Token exchange: scopes built from a CI job token's claims (broker/callers/exchange.py).
EXCHANGE_TABLES = [
    TrustedIssuer(preset="github-actions", audience="a", conditions={"repository": "a*"}),
    TrustedIssuer(
        preset="github-actions",
        issuer="https://ghe.example.com/_services/token",
        audience="a",
        conditions={"repository": "a*"},
        scope_template="gh-ent/{repository}/pr-{pr}/run-{run_id}-{run_attempt}",
    ),
    TrustedIssuer(preset="gitlab", audience="a", conditions={"project_path": "a*"}),
    TrustedIssuer(
        preset="gitlab",
        issuer="https://gitlab.example.com",
        audience="a",
        conditions={"project_path": "a*"},
        scope_template="gl-self/{project_path}/-/mr-{pr}/job-{job_id}",
    ),
]
valid_part = st.from_regex(r"[a-z0-9_.-]{1,4}", fullmatch=True)
# Mostly usable values, so that most pairs of jobs get scopes to compare; the odd hostile one.
part = st.one_of(
    valid_part,
    valid_part,
    valid_part,
    st.sampled_from(["..", ".", "", "-", "run-1-1", "pr-12", "0x" + "ab" * 20, "ci", "dev"]),
)
digits = st.from_regex(r"[0-9]{1,3}", fullmatch=True)
number = st.one_of(digits, digits, digits, st.sampled_from(["1-2", "x", ""]))
job_claims = st.fixed_dictionaries(
    {
        "repository": st.lists(part, min_size=2, max_size=3).map("/".join),
        "project_path": st.lists(part, min_size=1, max_size=3).map("/".join),
        "run_id": number,
        "run_attempt": number,
        "pipeline_id": number,
        "job_id": number,
        "ref": st.sampled_from(["refs/pull/12/merge", "refs/pull/1/head", "main"]),
        "ref_path": st.sampled_from(["refs/merge-requests/3/head", "refs/heads/x"]),
    }
)


def project(table: TrustedIssuer, claims: dict[str, str]) -> str:
    return claims["repository" if table.preset == "github-actions" else "project_path"]


@settings(max_examples=500, deadline=None)
@given(
    first=st.tuples(st.sampled_from(EXCHANGE_TABLES), job_claims),
    second=st.tuples(st.sampled_from(EXCHANGE_TABLES), job_claims),
    home=st.tuples(st.sampled_from(["ci", "dev"]), names),
)
def test_exchanged_scopes_never_overlap_another_project_or_caller(
    first: tuple[TrustedIssuer, dict[str, str]],
    second: tuple[TrustedIssuer, dict[str, str]],
    home: tuple[str, str],
) -> None:
    scopes = []
    for table, claims in (first, second):
        try:
            scope, _ = exchange.render_scope(SubjectToken(text="", header={}, claims=claims), table)
        except InvalidGrant:
            scopes.append(None)
            continue
        assert check_scope(scope) == scope
        assert not overlaps(scope, "/".join(home))  # credentials' allowances: ci/<name>, dev/<name>
        assert not WALLET.fullmatch(scope.split("/")[0])  # federation wallets
        scopes.append(scope)
    same_project = first[0] is second[0] and project(*first) == project(*second)
    if scopes[0] is not None and scopes[1] is not None and not same_project:
        assert not overlaps(scopes[0], scopes[1])
