"""The negative-token factory: one signed token (and the JWKS it is checked against) per STS error.

Tokens are assembled by hand and signed with joserfc's algorithm objects, so a case can carry what
joserfc's JWT layer would refuse to emit (a ``crit`` header, a float ``iat``, PS256/EdDSA/HS256).
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from broker.sts.catalogue import NOT_VALIDATED, RETRIEVE_KEY, ROLES_CLAIM
from broker.sts.tags import TAGS_CLAIM

NOW = 1_800_000_000
ISSUER = "https://oidc.example.com"
AUD = "sts.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/oidc-test-role"
WALLET = "0x" + "ab" * 20
SigningKey = ECKey | RSAKey | OKPKey | OctKey


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _public(key: ECKey | RSAKey) -> dict[str, Any]:
    alg = "ES256" if isinstance(key, ECKey) else "RS256"
    return {**key.as_dict(private=False), "kid": key.thumbprint(), "use": "sig", "alg": alg}


@dataclass
class Signer:
    """Keys published by the crafted issuer, and tokens signed with them."""

    ec: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256"))
    rsa: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048))
    issuer: str = ISSUER

    def jwks(self) -> dict[str, Any]:
        return {"keys": [_public(self.ec), _public(self.rsa)]}

    def claims(self, now: int = NOW) -> dict[str, Any]:
        return {
            "iss": self.issuer,
            "sub": f"agentkeys:agent:{WALLET}",
            "aud": AUD,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": "j-1",
            TAGS_CLAIM: {
                "principal_tags": {"agentkeys_user_wallet": [WALLET], "caller": ["fed"]},
                "transitive_tag_keys": ["agentkeys_user_wallet"],
            },
        }

    def sign(
        self,
        claims: dict[str, Any],
        *,
        header: dict[str, Any] | None = None,
        key: SigningKey | None = None,
        alg: str | None = None,
    ) -> str:
        key = self.ec if key is None else key
        alg = alg or ("RS256" if isinstance(key, RSAKey) else "ES256")
        head = {"alg": alg, "typ": "JWT"}
        if isinstance(key, ECKey | RSAKey):
            head["kid"] = key.thumbprint()
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not None}  # None: drop the member
        return self.sign_raw(json.dumps(head).encode(), json.dumps(claims).encode(), key, alg)

    def sign_raw(
        self, header: bytes, payload: bytes, key: SigningKey | None = None, alg: str = "ES256"
    ) -> str:
        """Sign JSON exactly as given (duplicate members, odd spacing)."""
        key = self.ec if key is None else key
        signing_input = f"{_b64(header)}.{_b64(payload)}"
        signature = JWSRegistry.algorithms[alg].sign(signing_input.encode(), key)
        return f"{signing_input}.{_b64(signature)}"


@dataclass(frozen=True)
class Negative:
    name: str
    token: str
    jwks: dict[str, Any]
    rule: str  # the rule that decides STS's answer
    code: str
    message: str  # STS's message (or its start, for messages that carry values)
    role_arn: str | None = None


def _with(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(claims)
    for name, value in changes.items():
        out.pop(name) if value is _DROP else out.__setitem__(name, value)
    return out


_DROP = object()
IIT, EXPIRED = "InvalidIdentityToken", "ExpiredTokenException"
EXPIRED_MESSAGE = (
    f"Token expired: current date/time {NOW - 300} must be before the expiration date/time "
    f"{NOW - 301}"
)


def _tags(principal: Any, transitive: Any = None) -> dict[str, Any]:
    value = {"principal_tags": principal}
    return {TAGS_CLAIM: value | ({} if transitive is None else {"transitive_tag_keys": transitive})}


def padded_to(signer: Signer, length: int) -> str:
    """A valid token of exactly ``length`` characters (a padding claim, then the header)."""
    for extra in range(4):  # some payload lengths are unreachable in base64url: pad the header
        header = {"x": "h" * extra} if extra else None

        def sign(n: int, header: dict[str, Any] | None = header) -> str:
            return signer.sign(signer.claims() | {"pad": "p" * n}, header=header)

        guess = (length - len(sign(0))) * 3 // 4
        for n in range(guess - 3, guess + 4):
            if len(token := sign(n)) == length:
                return token
    raise AssertionError(f"no token of exactly {length} characters")


def negatives(signer: Signer) -> list[Negative]:
    """Every error of the catalogue, as STS would answer it at NOW for ISSUER and AUD."""
    c, jwks = signer.claims(), signer.jwks()
    rsa_kid = signer.rsa.thumbprint()
    other = ECKey.generate_key("P-256")
    many_rsa = {
        "keys": [_public(signer.rsa) | {"kid": f"r{i}"} for i in range(100)] + [_public(signer.rsa)]
    }
    flipped = signer.sign(c)
    flipped = flipped[:-2] + ("A" if flipped[-2] != "A" else "B") + flipped[-1]
    cases = [
        (
            "expired by 301 s",
            signer.sign(_with(c, exp=NOW - 301)),
            "claims.exp.expired",
            EXPIRED,
            EXPIRED_MESSAGE,
        ),
        (
            "iat 301 s ahead",
            signer.sign(_with(c, iat=NOW + 301)),
            "claims.iat.future",
            IIT,
            f"Token issued in the future: {NOW + 301}",
        ),
        (
            "nbf 301 s ahead",
            signer.sign(_with(c, nbf=NOW + 301)),
            "claims.nbf.future",
            IIT,
            "Token not yet valid: ",
        ),
        (
            "float iat",
            signer.sign(_with(c, iat=NOW + 0.5)),
            "claims.iat.integer",
            IIT,
            "Invalid timestamp in token claims.",
        ),
        (
            "exp 10**30",
            signer.sign(_with(c, exp=10**30)),
            "claims.exp.integer",
            IIT,
            "Invalid timestamp in token claims.",
        ),
        *[
            (
                f"missing {name}",
                signer.sign(_with(c, **{name: _DROP})),
                "claims.required",
                IIT,
                f"Missing a required claim: {name}",
            )
            for name in ("iss", "sub", "aud", "iat", "exp")
        ],
        (
            "aud list without azp",
            signer.sign(_with(c, aud=[AUD, "other"])),
            "claims.aud.multiple",
            IIT,
            "Token audience contains more than one audience while authorized party is not present",
        ),
        (
            "empty aud",
            signer.sign(_with(c, aud=[])),
            "claims.aud.empty",
            IIT,
            "Claim is not allowed to be empty: aud",
        ),
        ("unknown kid", signer.sign(c, header={"kid": "nope"}), "kid.published", IIT, RETRIEVE_KEY),
        ("missing kid", signer.sign(c, header={"kid": None}), "kid.published", IIT, RETRIEVE_KEY),
        ("empty kid", signer.sign(c, header={"kid": ""}), "kid.published", IIT, RETRIEVE_KEY),
        (
            "bare-string tag",
            signer.sign(_with(c, **_tags({"run": "r1"}))),
            "tags.format",
            IIT,
            "principal_tags passed in claim is not in correct format.",
        ),
        (
            "51 tags",
            signer.sign(_with(c, **_tags({f"k{i}": ["v"] for i in range(51)}))),
            "tags.count",
            IIT,
            "Too many session tags: 51",
        ),
        (
            "aws: key",
            signer.sign(_with(c, **_tags({"aws:run": ["r"]}))),
            "tags.aws_prefix",
            IIT,
            "Session tag key cannot start with aws:",
        ),
        (
            "case-duplicate keys",
            signer.sign(_with(c, **_tags({"run": ["a"], "Run": ["b"]}))),
            "tags.duplicate_keys",
            IIT,
            "Duplicate session tag key",
        ),
        (
            "transitive key not a tag",
            signer.sign(_with(c, **_tags({"run": ["a"]}, ["scope"]))),
            "tags.transitive",
            IIT,
            "transitive_tag_keys passed in claim is not in correct format.",
        ),
        (
            "20 001 characters",
            padded_to(signer, 20_001),
            "token.length",
            "ValidationError",
            "1 validation error detected",
        ),
        (
            "crit header",
            signer.sign(c, header={"crit": ["exp"]}),
            "header.crit",
            IIT,
            "The ID Token provided is not a valid JWT",
        ),
        ("PS256", signer.sign(c, key=signer.rsa, alg="PS256"), "header.alg", IIT, NOT_VALIDATED),
        (
            "EdDSA",
            signer.sign(c, key=OKPKey.generate_key("Ed25519"), alg="EdDSA"),
            "header.alg",
            IIT,
            NOT_VALIDATED,
        ),
        (
            "HS256",
            signer.sign(c, key=OctKey.generate_key(256), alg="HS256"),
            "header.alg",
            IIT,
            NOT_VALIDATED,
        ),
        (
            "sub null",
            signer.sign(_with(c, sub=None)),
            "claims.sub.null",
            "InternalFailure",
            "Unknown error validating third-party token",
        ),
        (
            "iss trailing slash",
            signer.sign(_with(c, iss=ISSUER + "/")),
            "claims.iss",
            IIT,
            f"No OpenIDConnect provider found in your account for {ISSUER}/",
        ),
        ("changed signature", flipped, "signature", IIT, NOT_VALIDATED),
        (
            "unpublished key",
            signer.sign(c, key=other, header={"kid": signer.ec.thumbprint()}),
            "signature",
            IIT,
            NOT_VALIDATED,
        ),
    ]
    out = [Negative(n, t, jwks, r, code, m) for n, t, r, code, m in cases]
    jwk_cases = [
        (
            "JWK with key_ops",
            {"keys": [jwks["keys"][0] | {"key_ops": ["verify"]}]},
            "jwks.key_ops",
            NOT_VALIDATED,
        ),
        (
            "JWK with use enc",
            {"keys": [jwks["keys"][0] | {"use": "enc"}]},
            "jwks.use",
            RETRIEVE_KEY,
        ),
        (
            "private key published",
            {"keys": [signer.ec.as_dict(private=True) | {"kid": signer.ec.thumbprint()}]},
            "jwks.private_material",
            RETRIEVE_KEY,
        ),
    ]
    out += [Negative(n, signer.sign(c), k, r, IIT, m) for n, k, r, m in jwk_cases]
    # ES256 needs P-256 (RFC 7518 3.4); joserfc signs it with a P-384 key all the same.
    p384 = ECKey.generate_key("P-384")
    p384_jwk = {**p384.as_dict(private=False), "kid": p384.thumbprint()}  # no alg member
    out.append(
        Negative(
            "ES256 token, P-384 key",
            signer.sign(c, key=p384, alg="ES256"),
            {"keys": [*jwks["keys"], p384_jwk]},
            "kid.key_type",
            IIT,
            NOT_VALIDATED,
        )
    )
    rsa_token = signer.sign(c, key=signer.rsa, header={"kid": rsa_kid})
    out.append(Negative("101 RSA keys", rsa_token, many_rsa, "jwks.key_count", IIT, RETRIEVE_KEY))
    for name, roles, rule, message in (
        (
            "role not listed",
            ["arn:aws:iam::123456789012:role/other"],
            "roles.target",
            "The target role ARN is not present in the roles claim of the identity token",
        ),
        ("no valid role ARNs", [], "roles.valid", "The roles claim contains no valid role ARNs"),
        ("roles claim a number", 7, "roles.format", "The roles claim is not in a supported format"),
    ):
        token = signer.sign(_with(c, **{ROLES_CLAIM: roles}))
        out.append(Negative(name, token, jwks, rule, IIT, message, role_arn=ROLE))
    return out
