"""STS rules for the issuer side: the discovery document and the JWKS (``discovery.*``, ``jwks.*``).

Split from :mod:`broker.sts_rules` (findings, rule ids and STS's evaluation order live there).
STS fetches ``<iss>/.well-known/openid-configuration``, then ``jwks_uri``; anything here that
breaks is reported by STS as the "Couldn't retrieve verification key" error, whatever the cause.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.sts_rules import (
    ALLOWED_ALGS,
    EC_ALGS,
    NOT_VALIDATED,
    RETRIEVE_KEY,
    RSA_ALGS,
    Finding,
    Severity,
    _house,
    _reject,
    _show,
)

_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_CURVES: dict[str, tuple[ec.EllipticCurve, str]] = {
    "P-256": (ec.SECP256R1(), "ES256"),
    "P-384": (ec.SECP384R1(), "ES384"),
    "P-521": (ec.SECP521R1(), "ES512"),
}
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_KEY_COUNT_MARGIN = 10


def check_jwks(jwks: Mapping[str, Any], *, max_keys_per_type: int = 100) -> list[Finding]:
    """Every rule the published JWKS can break, key by key, then across keys."""
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        return [
            _reject("jwks.keys", f"keys is {_show(keys)}", "Publish a keys list.", RETRIEVE_KEY)
        ]
    out: list[Finding] = []
    kids: Counter[str] = Counter()
    per_type: Counter[str] = Counter()
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            out.append(
                _reject(
                    "jwks.keys",
                    f"keys[{i}] is {_show(key)}",
                    "Make every key a JSON object.",
                    RETRIEVE_KEY,
                )
            )
            continue
        kid = key.get("kid")
        if isinstance(kid, str) and kid:
            kids[kid] += 1
        per_type[str(key.get("kty"))] += 1
        _check_key(key, f"keys[{i}] (kid {_show(kid)})", out)
    if dupes := sorted(kid for kid, n in kids.items() if n > 1):
        out.append(
            _house(
                "jwks.kid_unique",
                f"kids {dupes} appear more than once (STS uses the last one)",
                "Give every key its own kid (the RFC 7638 thumbprint).",
            )
        )
    for kty in ("RSA", "EC"):
        n = per_type[kty]
        if n > max_keys_per_type:  # observed: breaks tokens of this key type only
            out.append(
                _reject(
                    "jwks.key_count",
                    f"{n} {kty} keys, above STS's cap of {max_keys_per_type}; "
                    f"every {kty}-signed token fails",
                    "Remove retired keys from the JWKS.",
                    RETRIEVE_KEY,
                )
            )
        elif n >= max_keys_per_type - _KEY_COUNT_MARGIN:
            out.append(
                Finding(
                    rule="jwks.key_count",
                    severity=Severity.WARN,
                    detail=f"{n} {kty} keys, close to STS's cap of {max_keys_per_type}",
                    fix="Remove retired keys before the cap is reached.",
                )
            )
    return out


def _check_key(key: Mapping[str, Any], name: str, out: list[Finding]) -> None:
    kty = key.get("kty")
    if kty not in ("RSA", "EC"):
        # Unobserved whether STS skips or fails on such a key; it can never verify a token.
        out.append(
            _reject(
                "jwks.kty",
                f"{name} has kty {_show(kty)}",
                "Publish only RSA or EC keys.",
                RETRIEVE_KEY,
            )
        )
        return
    if not isinstance(key.get("kid"), str) or not key["kid"]:
        out.append(
            _reject("jwks.kid", f"{name} has no usable kid", "Give the key a kid.", RETRIEVE_KEY)
        )
    if "use" in key and key["use"] != "sig":
        out.append(
            _reject(
                "jwks.use", f"{name} has use {_show(key['use'])}", 'Set use "sig".', RETRIEVE_KEY
            )
        )
    if "key_ops" in key:
        out.append(_reject("jwks.key_ops", f"{name} has key_ops", "Drop key_ops.", NOT_VALIDATED))
    if private := [m for m in _PRIVATE_MEMBERS if m in key]:
        # STS's reaction is unobserved; the finding is fatal anyway: the private key has leaked.
        out.append(
            _reject(
                "jwks.private_material",
                f"{name} publishes private members {private}: fatal, the private key is leaked",
                "Publish only public members, then revoke and replace this key.",
                RETRIEVE_KEY,
            )
        )
    alg = key.get("alg")
    # STS ignores a JWK's alg (the token header decides), so a wrong one is only a house rule.
    if "alg" in key and alg not in (RSA_ALGS if kty == "RSA" else EC_ALGS):
        out.append(_house("jwks.alg", f"{name} has alg {_show(alg)} for kty {kty}", "Fix alg."))
    public = _rsa_public(key, name, out) if kty == "RSA" else _ec_public(key, name, alg, out)
    if "x5c" in key:
        _check_x5c(key["x5c"], public, name, out)


def _b64url_int(value: Any) -> int | None:
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        return None
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _material(name: str, what: str, out: list[Finding]) -> None:
    out.append(
        _reject(
            "jwks.key_material",
            f"{name} has no valid {what}",
            f"Publish the key's {what} (base64url, as RFC 7518 says).",
            RETRIEVE_KEY,
        )
    )


def _rsa_public(key: Mapping[str, Any], name: str, out: list[Finding]) -> rsa.RSAPublicKey | None:
    n, e = _b64url_int(key.get("n")), _b64url_int(key.get("e"))
    if n is None or e is None:
        _material(name, "n and e", out)
        return None
    if n.bit_length() < 2048:
        # aws-sts-rules.md: "RSA ≥ 2048 bits"; the exact error for a short key is unrecorded.
        out.append(
            _reject(
                "jwks.rsa_size",
                f"{name} has a {n.bit_length()}-bit modulus",
                "Use an RSA key of at least 2048 bits.",
                RETRIEVE_KEY,
            )
        )
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        _material(name, "n and e", out)
        return None


def _ec_public(
    key: Mapping[str, Any], name: str, alg: Any, out: list[Finding]
) -> ec.EllipticCurvePublicKey | None:
    crv = key.get("crv")
    if not isinstance(crv, str) or crv not in _CURVES:
        out.append(
            _reject(
                "jwks.ec_curve",
                f"{name} has crv {_show(crv)}",
                "Use P-256, P-384 or P-521.",
                RETRIEVE_KEY,
            )
        )
        return None
    curve, curve_alg = _CURVES[crv]
    if alg in EC_ALGS and alg != curve_alg:
        out.append(
            _house(
                "jwks.ec_curve", f"{name} pairs crv {crv} with alg {alg}", f"Set alg {curve_alg}."
            )
        )
    x, y = _b64url_int(key.get("x")), _b64url_int(key.get("y"))
    try:
        if x is None or y is None:
            raise ValueError
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError:
        _material(name, f"x and y on {crv}", out)
        return None


def _check_x5c(
    chain: Any,
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None,
    name: str,
    out: list[Finding],
) -> None:
    try:
        if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
            raise ValueError
        cert_key = x509.load_der_x509_certificate(
            base64.b64decode(chain[0], validate=True)
        ).public_key()
    except (ValueError, binascii.Error):
        problem = "x5c[0] is not a base64 DER certificate"
    else:
        if public is None or cert_key.public_numbers() == public.public_numbers():
            return  # certificate-only keys are already a jwks.key_material finding
        problem = "x5c[0] certifies a different public key"
    out.append(
        _reject(
            "jwks.x5c",
            f"{name}: {problem}",
            "Drop x5c or publish the key's own certificate.",
            RETRIEVE_KEY,
        )
    )


def check_discovery(doc: Mapping[str, Any], *, issuer: str) -> list[Finding]:
    """The provider URL's shape and the discovery document STS reads at <issuer>/.well-known/..."""
    out = _check_issuer_url(issuer)
    if doc.get("issuer") != issuer:
        out.append(
            _reject(
                "discovery.issuer",
                f"the document's issuer {_show(doc.get('issuer'))} is not {issuer!r}",
                "Serve the provider URL, byte for byte, as issuer.",
                f"No OpenIDConnect provider found in your account for {issuer}",
            )
        )
    jwks_uri = doc.get("jwks_uri")
    parts = urlsplit(jwks_uri) if isinstance(jwks_uri, str) else None
    if parts is not None and parts.scheme == "http" and _is_loopback(parts.hostname):
        out.append(
            _house(
                "discovery.jwks_uri",
                f"jwks_uri {jwks_uri!r} is loopback http: fine for local tests, "
                "AWS cannot fetch it (STS needs https)",
                "Serve the JWKS over https on a public host.",
            )
        )
    elif parts is None or parts.scheme != "https" or not parts.hostname:
        out.append(
            _reject(
                "discovery.jwks_uri",
                f"jwks_uri {_show(jwks_uri)} is not an absolute https URL",
                "Set jwks_uri to the JWKS's absolute https URL.",
                RETRIEVE_KEY,
            )
        )
    # STS is documented to read only issuer and jwks_uri; the rest is OIDC Discovery hygiene.
    for rule, member, want in (
        ("discovery.response_types", "response_types_supported", "id_token"),
        ("discovery.subject_types", "subject_types_supported", "public"),
    ):
        if not isinstance(doc.get(member), list) or want not in doc[member]:
            out.append(
                _house(rule, f"{member} is {_show(doc.get(member))}", f'List "{want}" in it.')
            )
    algs = doc.get("id_token_signing_alg_values_supported")
    if not isinstance(algs, list) or not algs or not all(a in ALLOWED_ALGS for a in algs):
        out.append(
            _house(
                "discovery.signing_algs",
                f"id_token_signing_alg_values_supported is {_show(algs)}",
                "List only the RS*/ES* algorithms the keys use.",
            )
        )
    return out


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_issuer_url(issuer: str) -> list[Finding]:
    parts = urlsplit(issuer)
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return [
            _house(
                "discovery.issuer_url",
                f"issuer {issuer!r} is loopback http: fine for local tests, AWS cannot reach it",
                "Use a public https issuer for real STS.",
            )
        ]
    problems = [
        text
        for bad, text in (
            (parts.scheme != "https", "is not https"),
            (not parts.hostname, "has no host"),
            ("@" in parts.netloc, "has user info"),
            (":" in parts.netloc.rpartition("@")[2].rpartition("]")[2], "has a port"),
            (parts.netloc != parts.netloc.lower(), "has an upper-case host"),
            ("?" in issuer, "has a query"),
            ("#" in issuer, "has a fragment"),
            (issuer.endswith("/"), "ends with '/'"),
        )
        if bad
    ]
    if not problems:
        return []
    return [
        _reject(
            "discovery.issuer_url",
            f"issuer {issuer!r} " + ", ".join(problems),
            "Use https://<lowercase host>[/path] with no port, query, fragment or trailing slash.",
            f"No OpenIDConnect provider found in your account for {issuer}",
        )
    ]
