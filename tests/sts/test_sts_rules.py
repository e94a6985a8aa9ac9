"""Every STS rule, SPIRE-style: one table, a passing and a failing case per rule id."""

from __future__ import annotations

import base64
import copy
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, RSAKey

from broker.sts import token_rules as sts_rules
from broker.sts.catalogue import (
    MESSAGES,
    NOT_VALIDATED,
    RETRIEVE_KEY,
    ROLES_CLAIM,
    RULES,
    Finding,
    Severity,
    blocking,
    sts_outcome,
)
from broker.sts.issuer_rules import check_discovery, check_jwks
from broker.sts.tags import TAGS_CLAIM
from broker.sts.token_rules import check_roles_claim, check_token, check_token_kid

NOW = 1_800_000_000
ISSUER = "https://broker.example.com"
AUD = "sts.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/test-broker"
OTHER_ROLE = "arn:aws:iam::123456789012:role/other"
WALLET = "0x" + "ab" * 20
REJECT, HOUSE, WARN = Severity.REJECT, Severity.HOUSE, Severity.WARN


def _cert(private_key: Any) -> str:
    """A self-signed certificate for the key, as one x5c entry (base64 DER)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(private_key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _b64url(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _make_keys() -> dict[str, Any]:
    ec_key, rsa_key = ECKey.generate_key("P-256"), RSAKey.generate_key(2048)
    p384 = ECKey.generate_key("P-384")
    small = rsa.generate_private_key(65537, 1024)  # noqa: S505  # too small on purpose
    return {
        "ec": {**ec_key.as_dict(private=False), "kid": ec_key.thumbprint()}
        | {"use": "sig", "alg": "ES256"},
        "rsa": {**rsa_key.as_dict(private=False), "kid": rsa_key.thumbprint()}
        | {"use": "sig", "alg": "RS256"},
        "ec384": {**p384.as_dict(private=False), "kid": p384.thumbprint()},  # no alg member
        "ec_private": ec_key.as_dict(private=True),
        "ec_cert": _cert(ec_key.private_key),
        "rsa_cert": _cert(rsa_key.private_key),
        "small_n": _b64url(small.public_key().public_numbers().n),
        "unknown_key_cert": _unknown_key_cert(_cert(ec_key.private_key)),
    }


def _unknown_key_cert(cert: str) -> str:
    """The certificate with its key's algorithm OID made unknown: cryptography cannot load it."""
    ec_public_key = bytes.fromhex("06072A8648CE3D0201")  # OID 1.2.840.10045.2.1
    der = base64.b64decode(cert).replace(ec_public_key, bytes.fromhex("06072A8648CE3D0209"))
    return base64.b64encode(der).decode()


KEYS = _make_keys()


@dataclass
class Inputs:
    header: dict[str, Any]
    claims: dict[str, Any]
    jwks: dict[str, Any]
    discovery: dict[str, Any]
    issuer: str = ISSUER
    token_length: int = 900
    role_arn: str = ROLE


def good() -> Inputs:
    keys = KEYS
    return Inputs(
        header={"alg": "ES256", "kid": keys["ec"]["kid"], "typ": "JWT"},
        claims={
            "iss": ISSUER,
            "sub": f"agentkeys:agent:{WALLET}",
            "aud": AUD,
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 300,
            "jti": "Yb2mR0cS0m5n8Xw3",
            "agentkeys_user_wallet": WALLET,
            TAGS_CLAIM: {
                "principal_tags": {"agentkeys_user_wallet": [WALLET], "caller": ["fed"]},
                "transitive_tag_keys": ["agentkeys_user_wallet"],
            },
        },
        jwks={"keys": [copy.deepcopy(keys["ec"]), copy.deepcopy(keys["rsa"])]},
        discovery={
            "issuer": ISSUER,
            "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "claims_supported": ["iss", "sub", "aud", "iat", "exp", "nbf", "jti"],
        },
    )


def run_all(s: Inputs) -> list[Finding]:
    return [
        *check_token(
            s.header,
            s.claims,
            token_length=s.token_length,
            issuer=s.issuer,
            audiences=(AUD,),
            now=NOW,
        ),
        *check_token_kid(s.header, s.jwks),
        *check_jwks(s.jwks),
        *check_discovery(s.discovery, issuer=s.issuer),
        *check_roles_claim(s.claims, role_arn=s.role_arn),
    ]


# Mutators: each returns a function that changes one part of the good inputs.
Mutate = Callable[[Inputs], None]


def claim(name: str, value: Any) -> Mutate:
    return lambda s: s.claims.__setitem__(name, value)


def no_claim(name: str) -> Mutate:
    return lambda s: s.claims.pop(name)


def head(name: str, value: Any) -> Mutate:
    return lambda s: s.header.__setitem__(name, value)


def no_head(name: str) -> Mutate:
    return lambda s: s.header.pop(name)


def principal(tags: Any, transitive: Any = None) -> Mutate:
    value = {"principal_tags": tags} | (
        {} if transitive is None else {"transitive_tag_keys": transitive}
    )
    return claim(TAGS_CLAIM, value)


def jwk(index: int, **members: Any) -> Mutate:
    return lambda s: s.jwks["keys"][index].update(members)


def no_jwk_member(index: int, name: str) -> Mutate:
    return lambda s: s.jwks["keys"][index].pop(name)


def keys(*jwks: dict[str, Any]) -> Mutate:
    return lambda s: s.jwks.__setitem__("keys", [copy.deepcopy(k) for k in jwks])


def n_keys(kind: str, count: int) -> Mutate:
    return lambda s: s.jwks.__setitem__(
        "keys", [KEYS[kind] | {"kid": f"{kind}-{i}"} for i in range(count)]
    )


def doc(name: str, value: Any) -> Mutate:
    return lambda s: s.discovery.__setitem__(name, value)


def no_doc(name: str) -> Mutate:
    return lambda s: s.discovery.pop(name)


def issuer(value: str) -> Mutate:
    def mutate(s: Inputs) -> None:
        s.issuer = value

    return mutate


def length(value: int) -> Mutate:
    def mutate(s: Inputs) -> None:
        s.token_length = value

    return mutate


def both(*mutations: Mutate) -> Mutate:
    def mutate(s: Inputs) -> None:
        for m in mutations:
            m(s)

    return mutate


def nothing(s: Inputs) -> None:
    pass


class Case(NamedTuple):
    rule: str
    label: str
    mutate: Mutate
    severity: Severity | None  # None: the rule must not fire
    code: str | None = "InvalidIdentityToken"  # for REJECT cases
    message: str | None = None  # exact sts_message, where pinned


P = None  # "passes": the rule does not fire
TAGS_51 = {f"k{i}": ["v"] for i in range(51)}
TAGS_50 = {f"k{i}": ["v"] for i in range(50)}
EXPIRED_MSG = (
    f"Token expired: current date/time {NOW - 300} must be before the expiration date/time "
    f"{NOW - 301}"
)
NBF_MSG = (
    f"Token not yet valid: current date/time {NOW + 300} must be after or equal to the "
    f"not-before date/time {NOW + 301}"
)

CASES = [
    Case("token.length", "20000 chars", length(20_000), P),
    Case("token.length", "20001 chars", length(20_001), REJECT, "ValidationError"),
    Case("header.crit", "good", nothing, P),
    Case(
        "header.crit",
        "crit present",
        head("crit", ["exp"]),
        REJECT,
        message="The ID Token provided is not a valid JWT",
    ),
    Case("header.alg", "ES384", head("alg", "ES384"), P),
    Case("header.alg", "RS512", head("alg", "RS512"), P),
    Case("header.alg", "PS256", head("alg", "PS256"), REJECT),
    Case("header.alg", "EdDSA", head("alg", "EdDSA"), REJECT),
    Case("header.alg", "HS256", head("alg", "HS256"), REJECT),
    Case("header.alg", "none", head("alg", "none"), REJECT),
    Case("header.alg", "missing", no_head("alg"), REJECT),
    Case("header.kid", "good", nothing, P),
    Case("header.kid", "missing", no_head("kid"), HOUSE),
    Case("header.kid", "empty", head("kid", ""), HOUSE),
    Case("header.kid", "number", head("kid", 7), HOUSE),
    Case("header.typ", "JWT", nothing, P),
    Case("header.typ", "at+jwt", head("typ", "at+jwt"), HOUSE),
    Case("header.typ", "missing", no_head("typ"), HOUSE),
    Case("header.members", "crit is its own rule", head("crit", ["exp"]), P),
    Case("header.members", "x5u", head("x5u", "https://x.example/c.pem"), HOUSE),
    Case("claims.required", "good", nothing, P),
    *[
        Case(
            "claims.required",
            f"no {n}",
            no_claim(n),
            REJECT,
            message=f"Missing a required claim: {n}",
        )
        for n in ("iss", "sub", "aud", "iat", "exp")
    ],
    Case("claims.aud.empty", "one-element list", claim("aud", [AUD]), P),
    Case(
        "claims.aud.empty",
        "[]",
        claim("aud", []),
        REJECT,
        message="Claim is not allowed to be empty: aud",
    ),
    Case("claims.iat.integer", "int", nothing, P),
    Case("claims.iat.integer", "numeric string", claim("iat", str(NOW)), HOUSE),
    Case(
        "claims.iat.integer",
        "float",
        claim("iat", NOW + 0.5),
        REJECT,
        message="Invalid timestamp in token claims.",
    ),
    Case("claims.iat.integer", "null", claim("iat", None), REJECT),
    Case("claims.iat.integer", "bool", claim("iat", True), REJECT),
    Case("claims.iat.integer", "word", claim("iat", "now"), REJECT),
    Case("claims.iat.integer", "fractional string", claim("iat", f"{NOW}.5"), REJECT),
    Case("claims.exp.integer", "int", nothing, P),
    Case("claims.exp.integer", "numeric string", claim("exp", str(NOW + 300)), HOUSE),
    Case("claims.exp.integer", "float", claim("exp", NOW + 300.25), REJECT),
    Case("claims.exp.integer", "18 digits", claim("exp", 10**18 - 1), P),
    Case(
        "claims.exp.integer",
        "10**30, as a 31-digit string would be",
        claim("exp", 10**30),
        REJECT,
        message="Invalid timestamp in token claims.",
    ),
    Case("claims.iat.integer", "-10**18", claim("iat", -(10**18)), REJECT),
    Case("claims.nbf.integer", "absent", no_claim("nbf"), P),
    Case("claims.nbf.integer", "numeric string", claim("nbf", str(NOW)), HOUSE),
    Case("claims.nbf.integer", "null", claim("nbf", None), REJECT),
    Case("claims.nbf.present", "good", nothing, P),
    Case("claims.nbf.present", "missing", no_claim("nbf"), HOUSE),
    Case("claims.jti.present", "good", nothing, P),
    Case("claims.jti.present", "missing", no_claim("jti"), HOUSE),
    Case("claims.jti.present", "empty", claim("jti", ""), HOUSE),
    Case("claims.iss", "exact", nothing, P),
    Case(
        "claims.iss",
        "trailing slash",
        claim("iss", ISSUER + "/"),
        REJECT,
        message=f"No OpenIDConnect provider found in your account for {ISSUER}/",
    ),
    Case("claims.iss", "other case", claim("iss", ISSUER.upper()), REJECT),
    Case("discovery.issuer_url", "https host", nothing, P),
    Case("discovery.issuer_url", "https host/path", issuer(ISSUER + "/tenant/a"), P),
    Case("discovery.issuer_url", "port", issuer(ISSUER + ":8443"), REJECT),
    Case("discovery.issuer_url", "trailing slash", issuer(ISSUER + "/"), REJECT),
    Case("discovery.issuer_url", "upper-case host", issuer("https://Broker.example.com"), REJECT),
    Case("discovery.issuer_url", "query", issuer(ISSUER + "?x=1"), REJECT),
    Case("discovery.issuer_url", "fragment", issuer(ISSUER + "#f"), REJECT),
    Case("discovery.issuer_url", "public http", issuer("http://broker.example.com"), REJECT),
    Case("discovery.issuer_url", "not a URL", issuer("broker"), REJECT),
    Case("discovery.issuer_url", "dot-dot path", issuer(ISSUER + "/a/../b"), REJECT),
    Case("discovery.issuer_url", "escaped path", issuer(ISSUER + "/a%2Fb"), REJECT),
    Case("discovery.issuer_url", "loopback http", issuer("http://127.0.0.1:8080"), HOUSE),
    Case("discovery.issuer_url", "localhost http", issuer("http://localhost:9123"), HOUSE),
    Case("discovery.issuer_url", "::1 http", issuer("http://[::1]:8080"), HOUSE),
    Case("discovery.issuer_url", "loopback https", issuer("https://127.0.0.1:8443"), HOUSE),
    Case("discovery.issuer", "exact", nothing, P),
    Case("discovery.issuer", "trailing slash", doc("issuer", ISSUER + "/"), REJECT),
    Case("discovery.issuer", "missing", no_doc("issuer"), REJECT),
    Case("discovery.jwks_uri", "https elsewhere", doc("jwks_uri", "https://keys.example.net/k"), P),
    Case(
        "discovery.jwks_uri",
        "public http",
        doc("jwks_uri", "http://broker.example.com/k"),
        REJECT,
        message=RETRIEVE_KEY,
    ),
    Case("discovery.jwks_uri", "relative", doc("jwks_uri", "/.well-known/jwks.json"), REJECT),
    Case("discovery.jwks_uri", "missing", no_doc("jwks_uri"), REJECT),
    Case("discovery.jwks_uri", "broken URL", doc("jwks_uri", "https://[::1/k"), REJECT),
    Case("discovery.jwks_uri", "loopback http", doc("jwks_uri", "http://127.0.0.1:8080/k"), HOUSE),
    Case("discovery.response_types", "id_token", nothing, P),
    Case("discovery.response_types", "code only", doc("response_types_supported", ["code"]), HOUSE),
    Case("discovery.response_types", "missing", no_doc("response_types_supported"), HOUSE),
    Case("discovery.subject_types", "public", nothing, P),
    Case(
        "discovery.subject_types", "pairwise", doc("subject_types_supported", ["pairwise"]), HOUSE
    ),
    Case("discovery.signing_algs", "ES256+RS256", nothing, P),
    Case(
        "discovery.signing_algs",
        "PS256 listed",
        doc("id_token_signing_alg_values_supported", ["ES256", "PS256"]),
        HOUSE,
    ),
    Case(
        "discovery.signing_algs", "empty", doc("id_token_signing_alg_values_supported", []), HOUSE
    ),
    Case(
        "discovery.signing_algs",
        "unhashable",
        doc("id_token_signing_alg_values_supported", [["ES256"]]),
        HOUSE,
    ),
    Case("jwks.keys", "good", nothing, P),
    Case("jwks.keys", "empty", keys(), REJECT, message=RETRIEVE_KEY),
    Case("jwks.keys", "no keys member", lambda s: s.jwks.clear(), REJECT),
    Case("jwks.keys", "non-object key", lambda s: s.jwks["keys"].append("k"), REJECT),
    Case("jwks.key_count", "89 RSA keys", n_keys("rsa", 89), P),
    Case("jwks.key_count", "101 RSA keys", n_keys("rsa", 101), REJECT),
    Case("jwks.key_count", "101 EC keys", n_keys("ec", 101), REJECT),
    Case("jwks.key_count", "95 RSA keys", n_keys("rsa", 95), WARN, None),
    Case("jwks.kty", "RSA and EC", nothing, P),
    Case("jwks.kty", "OKP", jwk(0, kty="OKP"), REJECT),
    Case("jwks.kid", "good", nothing, P),
    Case("jwks.kid", "missing", no_jwk_member(0, "kid"), REJECT),
    Case("jwks.kid", "empty", jwk(0, kid=""), REJECT),
    Case("jwks.kid_unique", "distinct", nothing, P),
    Case("jwks.kid_unique", "duplicate", jwk(1, kid=KEYS["ec"]["kid"]), HOUSE),
    Case("jwks.use", "absent", no_jwk_member(0, "use"), P),
    Case("jwks.use", "enc", jwk(0, use="enc"), REJECT, message=RETRIEVE_KEY),
    Case("jwks.key_ops", "absent", nothing, P),
    Case("jwks.key_ops", "verify", jwk(0, key_ops=["verify"]), REJECT),
    Case("jwks.private_material", "public only", nothing, P),
    Case("jwks.private_material", "EC d", jwk(0, d=KEYS["ec_private"]["d"]), REJECT),
    Case("jwks.private_material", "RSA p", jwk(1, p="AQAB"), REJECT),
    Case("jwks.alg", "absent", no_jwk_member(1, "alg"), P),
    Case("jwks.alg", "RS512 on RSA", jwk(1, alg="RS512"), P),
    Case("jwks.alg", "PS256 on RSA", jwk(1, alg="PS256"), HOUSE),
    Case("jwks.alg", "RS256 on EC", jwk(0, alg="RS256"), HOUSE),
    Case("jwks.alg", "list", jwk(0, alg=["ES256"]), HOUSE),
    Case("jwks.key_material", "good", nothing, P),
    Case("jwks.key_material", "no n", no_jwk_member(1, "n"), REJECT),
    Case(
        "jwks.key_material",
        "x5c only",
        both(no_jwk_member(1, "n"), no_jwk_member(1, "e"), jwk(1, x5c=[KEYS["rsa_cert"]])),
        REJECT,
    ),
    Case("jwks.key_material", "x not base64url", jwk(0, x="!!"), REJECT),
    Case("jwks.key_material", "point off the curve", jwk(0, y=KEYS["ec"]["x"]), REJECT),
    Case("jwks.rsa_size", "2048 bits", nothing, P),
    Case("jwks.rsa_size", "1024 bits", jwk(1, n=KEYS["small_n"]), REJECT),
    Case("jwks.ec_curve", "P-256 ES256", nothing, P),
    Case("jwks.ec_curve", "secp256k1", jwk(0, crv="secp256k1"), REJECT),
    Case("jwks.ec_curve", "P-256 with ES384", jwk(0, alg="ES384"), HOUSE),
    Case("jwks.x5c", "own certificate", jwk(0, x5c=[KEYS["ec_cert"]]), P),
    Case("jwks.x5c", "own RSA certificate", jwk(1, x5c=[KEYS["rsa_cert"]]), P),
    Case("jwks.x5c", "other key's certificate", jwk(1, x5c=[KEYS["ec_cert"]]), REJECT),
    Case("jwks.x5c", "not base64 DER", jwk(0, x5c=["not a cert"]), REJECT),
    Case("jwks.x5c", "empty chain", jwk(0, x5c=[]), REJECT),
    Case("jwks.x5c", "unknown key algorithm", jwk(0, x5c=[KEYS["unknown_key_cert"]]), REJECT),
    Case("kid.published", "published", nothing, P),
    Case("kid.published", "no kid, one-key JWKS", both(no_head("kid"), keys(KEYS["ec"])), P),
    Case("kid.published", "no kid, two keys", no_head("kid"), REJECT, message=RETRIEVE_KEY),
    Case(
        "kid.published",
        "no kid, the one key has no kid",
        both(no_head("kid"), keys({k: v for k, v in KEYS["ec"].items() if k != "kid"})),
        REJECT,
    ),
    Case("kid.published", "unknown kid", head("kid", "nope"), REJECT),
    Case("kid.published", "empty kid", head("kid", ""), REJECT),
    Case(
        "kid.key_type",
        "last duplicate is EC",
        both(keys(KEYS["rsa"] | {"kid": "k"}, KEYS["ec"] | {"kid": "k"}), head("kid", "k")),
        P,
    ),
    Case(
        "kid.key_type",
        "last duplicate is RSA",
        both(keys(KEYS["ec"] | {"kid": "k"}, KEYS["rsa"] | {"kid": "k"}), head("kid", "k")),
        REJECT,
    ),
    Case(
        "kid.key_type",
        "ES384 on a P-384 key",
        both(keys(KEYS["ec384"]), head("kid", KEYS["ec384"]["kid"]), head("alg", "ES384")),
        P,
    ),
    Case(
        "kid.key_type",
        "ES256 on a P-384 key",
        both(keys(KEYS["ec384"]), head("kid", KEYS["ec384"]["kid"])),
        REJECT,
        message=NOT_VALIDATED,
    ),
    Case(
        "kid.key_type",
        "ES512 on a P-256 key",
        head("alg", "ES512"),
        REJECT,
    ),
    Case(
        "claims.aud.multiple",
        "two audiences with azp",
        both(claim("aud", [AUD, "x"]), claim("azp", AUD)),
        P,
    ),
    Case(
        "claims.aud.multiple",
        "two registered audiences, no azp",
        claim("aud", [AUD, AUD]),
        REJECT,
        message="Token audience contains more than one audience while authorized party is not "
        "present",
    ),
    Case("claims.azp", "absent", nothing, P),
    Case("claims.azp", "registered", both(claim("aud", ["x", "y"]), claim("azp", AUD)), HOUSE),
    Case("claims.azp", "unregistered", claim("azp", "other"), REJECT),
    Case("claims.azp", "empty", claim("azp", ""), REJECT),
    Case("claims.aud.registered", "one-element list", claim("aud", [AUD]), P),
    Case(
        "claims.aud.registered",
        "other",
        claim("aud", "other"),
        REJECT,
        message="Incorrect token audience",
    ),
    Case("claims.aud.registered", "other in a list", claim("aud", ["other"]), REJECT),
    Case("claims.aud.registered", "number", claim("aud", 5), REJECT),
    Case("claims.aud.list", "string", nothing, P),
    Case("claims.aud.list", "one-element list", claim("aud", [AUD]), HOUSE),
    Case(
        "claims.exp.expired",
        "300 s past",
        both(claim("iat", NOW - 600), claim("exp", NOW - 300)),
        P,
    ),
    Case(
        "claims.exp.expired",
        "301 s past",
        both(claim("iat", NOW - 600), claim("exp", NOW - 301)),
        REJECT,
        "ExpiredTokenException",
        EXPIRED_MSG,
    ),
    Case("claims.iat.future", "300 s ahead", claim("iat", NOW + 300), P),
    Case(
        "claims.iat.future",
        "301 s ahead",
        claim("iat", NOW + 301),
        REJECT,
        message=f"Token issued in the future: {NOW + 301}",
    ),
    Case("claims.iat.future", "301 s ahead as a string", claim("iat", str(NOW + 301)), REJECT),
    Case("claims.nbf.future", "300 s ahead", claim("nbf", NOW + 300), P),
    Case("claims.nbf.future", "301 s ahead", claim("nbf", NOW + 301), REJECT, message=NBF_MSG),
    Case("claims.lifetime", "3600 s", claim("exp", NOW + 3600), P),
    Case("claims.lifetime", "3601 s", claim("exp", NOW + 3601), HOUSE),
    Case("claims.exp.after_iat", "exp after iat", nothing, P),
    Case("claims.exp.after_iat", "exp == iat", claim("exp", NOW), HOUSE),
    Case("claims.sub.null", "empty string", claim("sub", ""), P),
    Case(
        "claims.sub.null",
        "null",
        claim("sub", None),
        REJECT,
        "InternalFailure",
        "Unknown error validating third-party token",
    ),
    Case("claims.sub.string", "string", nothing, P),
    Case("claims.sub.string", "empty", claim("sub", ""), HOUSE),
    Case("claims.sub.string", "number", claim("sub", 42), HOUSE),
    Case("tags.present", "nested", nothing, P),
    Case(
        "tags.present",
        "flattened only",
        both(no_claim(TAGS_CLAIM), claim(f"{TAGS_CLAIM}/principal_tags/run", "r1")),
        P,
    ),
    Case("tags.present", "absent", no_claim(TAGS_CLAIM), HOUSE),
    Case("tags.flattened", "nested only", nothing, P),
    Case("tags.flattened", "flattened tag", claim(f"{TAGS_CLAIM}/principal_tags/run", "r1"), HOUSE),
    Case(
        "tags.flattened",
        "flattened transitive",
        claim(f"{TAGS_CLAIM}/transitive_tag_keys", ["caller"]),
        HOUSE,
    ),
    Case("tags.format", "one-string lists", nothing, P),
    Case("tags.format", "flattened string", claim(f"{TAGS_CLAIM}/principal_tags/run", "r1"), P),
    Case(
        "tags.format",
        "bare string",
        principal({"run": "r1"}),
        REJECT,
        message="principal_tags passed in claim is not in correct format.",
    ),
    Case("tags.format", "two values", principal({"run": ["r1", "r2"]}), REJECT),
    Case("tags.format", "empty list", principal({"run": []}), REJECT),
    Case(
        "tags.format", "no principal_tags", claim(TAGS_CLAIM, {"transitive_tag_keys": []}), REJECT
    ),
    Case("tags.format", "claim is a string", claim(TAGS_CLAIM, "run=r1"), REJECT),
    Case(
        "tags.format", "flattened list", claim(f"{TAGS_CLAIM}/principal_tags/run", ["r1"]), REJECT
    ),
    Case("tags.count", "50 tags", principal(TAGS_50), P),
    Case("tags.count", "51 tags", principal(TAGS_51), REJECT),
    Case(
        "tags.count",
        "50 nested + 1 flattened",
        both(principal(TAGS_50), claim(f"{TAGS_CLAIM}/principal_tags/x", "v")),
        REJECT,
    ),
    Case("tags.key_length", "128 chars", principal({"k" * 128: ["v"]}), P),
    Case("tags.key_length", "129 chars", principal({"k" * 129: ["v"]}), REJECT),
    Case("tags.key_length", "empty key", principal({"": ["v"]}), REJECT),
    Case("tags.value_length", "256 chars and empty", principal({"a": ["v" * 256], "b": [""]}), P),
    Case("tags.value_length", "257 chars", principal({"a": ["v" * 257]}), REJECT),
    Case(
        "tags.charset",
        "all allowed ASCII",
        principal({"a_.:/=+-@ Z9": ["ci/x/pr-12/run-34 a=b+c@d:e"]}),
        P,
    ),
    Case(
        "tags.charset",
        "Unicode letters, spaces, numbers",
        principal({"Zürich": ["東京\u00a0٣ ü"]}),
        P,
    ),
    Case("tags.charset", "asterisk in key", principal({"a*b": ["v"]}), REJECT),
    Case("tags.charset", "comma in value", principal({"a": ["x,y"]}), REJECT),
    Case("tags.charset", "tab", principal({"a": ["x\ty"]}), REJECT),
    Case("tags.charset", "emoji", principal({"a": ["ok \U0001f600"]}), REJECT),
    Case("tags.aws_prefix", "aws: inside", principal({"xaws:": ["v aws:"]}), P),
    Case("tags.aws_prefix", "key AWS:", principal({"AWS:run": ["v"]}), REJECT),
    Case("tags.aws_prefix", "value aws:", principal({"run": ["aws:x"]}), REJECT),
    Case("tags.duplicate_keys", "distinct", principal({"run": ["a"], "run2": ["b"]}), P),
    Case("tags.duplicate_keys", "Run and run", principal({"run": ["a"], "Run": ["b"]}), REJECT),
    Case(
        "tags.duplicate_keys",
        "nested and flattened",
        claim(f"{TAGS_CLAIM}/principal_tags/CALLER", "x"),
        REJECT,
    ),
    Case("tags.transitive", "absent", principal({"run": ["a"]}), P),
    Case("tags.transitive", "other case", principal({"run": ["a"]}, ["RUN"]), P),
    Case("tags.transitive", "unknown key", principal({"run": ["a"]}, ["scope"]), REJECT),
    Case("tags.transitive", "a string", principal({"run": ["a"]}, "run"), REJECT),
    Case(
        "tags.transitive",
        "flattened, unknown key",
        claim(f"{TAGS_CLAIM}/transitive_tag_keys", ["x"]),
        REJECT,
    ),
    Case("roles.format", "absent", nothing, P),
    Case("roles.format", "null", claim(ROLES_CLAIM, None), P),
    Case(
        "roles.format",
        "number",
        claim(ROLES_CLAIM, 5),
        REJECT,
        message="The roles claim is not in a supported format",
    ),
    Case("roles.format", "bool", claim(ROLES_CLAIM, True), REJECT),
    Case("roles.format", "object", claim(ROLES_CLAIM, {"arn": ROLE}), REJECT),
    Case("roles.valid", "array", claim(ROLES_CLAIM, [OTHER_ROLE, ROLE]), P),
    Case("roles.valid", "junk next to it", claim(ROLES_CLAIM, [None, 5, "junk", ROLE]), P),
    Case(
        "roles.valid",
        "[]",
        claim(ROLES_CLAIM, []),
        REJECT,
        message="The roles claim contains no valid role ARNs",
    ),
    Case("roles.valid", '""', claim(ROLES_CLAIM, ""), REJECT),
    Case("roles.valid", "nested list", claim(ROLES_CLAIM, [[ROLE]]), REJECT),
    Case("roles.valid", "wildcard", claim(ROLES_CLAIM, "arn:aws:iam::123456789012:role/*"), REJECT),
    Case("roles.valid", "upper-case", claim(ROLES_CLAIM, ROLE.upper()), REJECT),
    Case("roles.valid", "comma-separated", claim(ROLES_CLAIM, f"{ROLE},{OTHER_ROLE}"), REJECT),
    Case("roles.target", "one string", claim(ROLES_CLAIM, ROLE), P),
    Case(
        "roles.target",
        "';' with spaces and junk",
        claim(ROLES_CLAIM, f"junk ; {OTHER_ROLE} ;  {ROLE} "),
        P,
    ),
    Case(
        "roles.target",
        "not listed",
        claim(ROLES_CLAIM, [OTHER_ROLE]),
        REJECT,
        message="The target role ARN is not present in the roles claim of the identity token",
    ),
]


def _case_id(case: Case) -> str:
    return f"{case.rule}-{'pass' if case.severity is None else case.severity}-{case.label}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_rule(case: Case) -> None:
    s = good()
    case.mutate(s)
    hits = [f for f in run_all(s) if f.rule == case.rule]
    if case.severity is None:
        assert hits == []
        return
    code = case.code if case.severity is REJECT else None
    assert hits, f"{case.rule} did not fire"
    assert [(case.severity, code)] * len(hits) == [(f.severity, f.sts_code) for f in hits]
    assert all(f.detail and f.fix.endswith(".") for f in hits)
    if case.severity is REJECT:
        assert all(f.sts_message for f in hits)
    if case.message is not None:
        assert case.message == hits[0].sts_message


def test_every_rule_has_a_passing_and_a_failing_case() -> None:
    failing = {c.rule for c in CASES if c.severity is not None}
    passing = {c.rule for c in CASES if c.severity is None}
    assert set(RULES) == failing
    assert set(RULES) == passing


def test_a_realistic_good_token_has_no_findings() -> None:
    s = good()
    s.claims[ROLES_CLAIM] = [ROLE]
    assert run_all(s) == []


def test_rsa_token_against_its_own_key_has_no_findings() -> None:
    s = good()
    s.header.update(alg="RS256", kid=KEYS["rsa"]["kid"])
    assert run_all(s) == []


def test_every_sts_message_belongs_to_a_rule() -> None:
    assert set(MESSAGES) <= set(RULES)


def test_retrieve_key_message_keeps_awss_double_space() -> None:
    assert "provider,  please reference" in RETRIEVE_KEY


def test_private_material_is_called_fatal() -> None:
    s = good()
    s.jwks["keys"][0]["d"] = KEYS["ec_private"]["d"]
    [finding] = [f for f in check_jwks(s.jwks) if f.rule == "jwks.private_material"]
    assert "fatal" in finding.detail


# One mutation per step of STS's documented evaluation order, earliest first.
ORDER = [
    ("token.length", length(20_001)),
    ("header.crit", head("crit", ["exp"])),
    ("header.alg", head("alg", "PS256")),
    ("claims.required", no_claim("aud")),
    ("claims.nbf.integer", claim("nbf", "soon")),
    ("claims.iss", claim("iss", ISSUER + "/")),
    ("kid.published", head("kid", "unknown")),
    ("claims.iat.future", claim("iat", NOW + 301)),
    ("claims.sub.null", claim("sub", None)),
    ("tags.format", principal({"run": "r1"})),
    ("roles.target", claim(ROLES_CLAIM, [OTHER_ROLE])),
]


@pytest.mark.parametrize("start", range(len(ORDER)), ids=[rule for rule, _ in ORDER])
def test_sts_outcome_picks_the_earliest_rule_in_sts_order(start: int) -> None:
    s = good()
    for _, mutate in ORDER[start:]:
        mutate(s)
    outcome = sts_outcome(reversed(run_all(s)))
    assert outcome is not None
    assert ORDER[start][0] == outcome.rule


def test_rules_are_listed_in_the_documented_order() -> None:
    order = list(RULES)
    assert [rule for rule, _ in ORDER] == sorted((r for r, _ in ORDER), key=order.index)


def test_sts_outcome_is_none_when_only_house_and_warn_findings() -> None:
    s = good()
    no_claim("jti")(s)  # HOUSE
    n_keys("ec", 95)(s)  # WARN
    s.header["kid"] = "ec-3"
    findings = run_all(s)
    assert {HOUSE, WARN} == {f.severity for f in findings}
    assert sts_outcome(findings) is None


def test_blocking_keeps_reject_and_house_but_not_warn() -> None:
    s = good()
    claim("azp", "other")(s)  # REJECT
    no_claim("nbf")(s)  # HOUSE
    n_keys("ec", 92)(s)  # WARN
    s.header["kid"] = "ec-0"
    assert {"claims.azp", "claims.nbf.present"} == {f.rule for f in blocking(run_all(s))}


def test_doctor_accepts_the_flattened_tag_form() -> None:
    s = good()
    del s.claims[TAGS_CLAIM]
    s.claims[f"{TAGS_CLAIM}/principal_tags/agentkeys_user_wallet"] = WALLET
    s.claims[f"{TAGS_CLAIM}/transitive_tag_keys"] = ["agentkeys_user_wallet"]
    findings = run_all(s)
    assert [f.rule for f in findings] == ["tags.flattened"]
    assert sts_outcome(findings) is None


def test_numeric_string_timestamps_are_used_for_the_time_window() -> None:
    s = good()
    s.claims.update(iat=str(NOW - 700), exp=str(NOW - 400))
    outcome = sts_outcome(run_all(s))
    assert outcome is not None
    assert (outcome.rule, outcome.sts_code) == ("claims.exp.expired", "ExpiredTokenException")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
NAMES = st.sampled_from(
    [
        "alg",
        "kid",
        "typ",
        "crit",
        "iss",
        "sub",
        "aud",
        "azp",
        "iat",
        "exp",
        "nbf",
        "jti",
        "keys",
        "kty",
        "n",
        "e",
        "x",
        "y",
        "crv",
        "x5c",
        "use",
        "issuer",
        "jwks_uri",
        TAGS_CLAIM,
        ROLES_CLAIM,
        f"{TAGS_CLAIM}/principal_tags/a",
        f"{TAGS_CLAIM}/transitive_tag_keys",
        "id_token_signing_alg_values_supported",
    ]
) | st.text(max_size=10)
OBJECTS = st.dictionaries(NAMES, JSON, max_size=8)


@settings(database=None)  # leave no .hypothesis/ behind in the tree
@given(header=OBJECTS, claims=OBJECTS, other=OBJECTS, url=st.text(max_size=40))
def test_any_json_input_yields_findings_never_an_exception(
    header: dict[str, Any], claims: dict[str, Any], other: dict[str, Any], url: str
) -> None:
    check_token(header, claims, token_length=10, issuer=url, audiences={AUD}, now=NOW)
    check_token_kid(header, other)
    check_jwks(other)
    check_jwks({"keys": [other, claims]})
    check_discovery(other, issuer=url)
    check_roles_claim(claims, role_arn=ROLE)


def test_key_cap_breaks_only_tokens_of_the_crowded_type() -> None:
    s = good()
    n_keys("rsa", 101)(s)
    s.jwks["keys"].append(copy.deepcopy(KEYS["ec"]))

    def severities(token_kty: str | None) -> list[Severity]:
        found = check_jwks(s.jwks, token_kty=token_kty)
        return [f.severity for f in found if f.rule == "jwks.key_count"]

    assert severities(None) == [REJECT]
    assert severities("RSA") == [REJECT]
    assert severities("EC") == [WARN]


def test_pick_key_takes_the_last_of_duplicate_kids_and_a_lone_key_without_kid() -> None:
    first, last = KEYS["ec"] | {"kid": "dup"}, KEYS["rsa"] | {"kid": "dup"}
    assert last == sts_rules.pick_key({"kid": "dup"}, {"keys": [first, last]})
    assert first == sts_rules.pick_key({}, {"keys": [first]})
    assert sts_rules.pick_key({}, {"keys": [first, last]}) is None
    assert sts_rules.pick_key({"kid": ""}, {"keys": [first]}) is None
