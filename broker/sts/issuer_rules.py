"""STS rules for the issuer side: the discovery document and the JWKS (``discovery.*``, ``jwks.*``).

The findings, rule ids and STS's messages are :mod:`broker.sts.catalogue`; the token side is
:mod:`broker.sts.token_rules`. STS fetches ``<iss>/.well-known/openid-configuration``, then
``jwks_uri``; most breakage on the way surfaces as "Couldn't retrieve verification key".
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.sts.catalogue import (
    ALLOWED_ALGS,
    EC_ALGS,
    MAX_KEYS_PER_TYPE,
    RSA_ALGS,
    Finding,
    add_house,
    add_reject,
    show,
    warn,
)
from broker.sts.jwt_text import b64url_decode

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_CURVES: dict[str, tuple[ec.EllipticCurve, str]] = {
    "P-256": (ec.SECP256R1(), "ES256"),
    "P-384": (ec.SECP384R1(), "ES384"),
    "P-521": (ec.SECP521R1(), "ES512"),
}
_KEY_COUNT_MARGIN = 10


# IAM's CreateOpenIDConnectProvider takes a URL of at most 255 characters.
ISSUER_MAX_LENGTH = 255
# RFC 3986 unreserved characters only: a path with '%', ':', ';', spaces or backslashes reads
# differently to IAM, STS's fetch, proxies and the `<host/path>:aud` condition keys.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def is_loopback_host(host: str) -> bool:
    """localhost or a loopback IP: a local test peer, which AWS can never reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_DNS_NAME = re.compile(
    r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", re.IGNORECASE
)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def issuer_path_problem(path: str) -> str | None:
    """Why IAM could not register (or STS could not fetch under) this issuer path, or None.

    The one rule for paths: config refuses such an issuer, doctor reports it
    (:func:`check_issuer_url`).
    """
    if not path:
        return None
    for segment in path.split("/")[1:]:  # a URL path starts with '/'
        if not segment:
            return "has an empty path segment ('//'): servers and proxies merge them"
        if segment in (".", ".."):
            return f"has a {segment!r} path segment: fetchers resolve it, so iss would not match"
        if not _PATH_SEGMENT.fullmatch(segment):
            return (
                f"has path segment {segment!r}: use only letters, digits and - . _ ~ "
                "(no spaces, '%' escapes, backslashes or other punctuation)"
            )
    return None


def issuer_problem(issuer: str) -> str | None:
    """Why AWS STS (or a loopback test peer) could not use this issuer URL, or None."""
    if not issuer.isascii():
        return "must be ASCII: IAM registers the URL byte for byte (use punycode for the host)"
    if len(issuer) > ISSUER_MAX_LENGTH:
        return f"is {len(issuer)} characters; IAM accepts at most {ISSUER_MAX_LENGTH}"
    try:
        parts = urlsplit(issuer)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "must be an absolute URL such as https://oidc.example.com"
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        return "must be an absolute URL such as https://oidc.example.com"
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        return "must not carry a query or fragment: STS compares the issuer byte for byte"
    if parts.username or parts.password:
        return "must not carry credentials"
    if parts.netloc.endswith(":") or not (_DNS_NAME.fullmatch(host) or _is_ip(host)):
        return f"host {parts.netloc!r} is not a DNS name (letters, digits, '-', '.') or an IP"
    if issuer.endswith("/"):
        return f"must not end with '/': use {issuer.rstrip('/')!r} (STS compares byte for byte)"
    if host != host.lower() or (parts.netloc != parts.netloc.lower()):
        return (
            f"host must be lower case: use {issuer.replace(parts.netloc, parts.netloc.lower())!r}"
        )
    if problem := issuer_path_problem(parts.path):
        return problem
    if is_loopback_host(host):
        return None
    if parts.scheme != "https":
        return "a non-loopback issuer must use https: AWS STS fetches discovery over TLS only"
    if parts.port is not None:
        return "a non-loopback issuer must not carry a port: AWS registers providers by host only"
    return None


def check_jwks(
    jwks: Mapping[str, Any],
    *,
    max_keys_per_type: int = MAX_KEYS_PER_TYPE,
    token_kty: str | None = None,
) -> list[Finding]:
    """Every rule the published JWKS can break, key by key, then across keys.

    ``token_kty`` (RSA or EC) judges the JWKS for one token: too many keys of the other type
    then only warns, since the cap breaks tokens of the crowded type alone.
    """
    out: list[Finding] = []
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        add_reject(out, "jwks.keys", f"keys is {show(keys)}", "Publish a non-empty keys list.")
        return out
    kids: Counter[str] = Counter()
    per_type: Counter[str] = Counter()
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            add_reject(out, "jwks.keys", f"keys[{i}] is {show(key)}", "Make each key an object.")
            continue
        kid = key.get("kid")
        if isinstance(kid, str) and kid:
            kids[kid] += 1
        per_type[str(key.get("kty"))] += 1
        _check_key(key, f"keys[{i}] (kid {show(kid)})", out)
    if dupes := sorted(kid for kid, n in kids.items() if n > 1):
        detail = f"kids {dupes} appear more than once (STS uses the last of each)"
        add_house(out, "jwks.kid_unique", detail, "Use the RFC 7638 thumbprint as kid.")
    for kty in ("RSA", "EC"):
        n, cap, fix = per_type[kty], max_keys_per_type, "Drop retired keys from the JWKS."
        detail = f"{n} {kty} keys, above STS's cap of {cap}: every {kty}-signed token fails"
        if n > cap and token_kty in (None, kty):  # observed: >100 RSA keys breaks RSA tokens only
            add_reject(out, "jwks.key_count", detail, fix)
        elif n > cap:
            out.append(warn("jwks.key_count", detail, fix))
        elif n >= cap - _KEY_COUNT_MARGIN:
            detail = f"{n} {kty} keys, close to STS's cap of {cap}"
            out.append(warn("jwks.key_count", detail, fix))
    return out


def _check_key(key: Mapping[str, Any], name: str, out: list[Finding]) -> None:
    kty = key.get("kty")
    if kty not in ("RSA", "EC"):
        add_reject(out, "jwks.kty", f"{name} has kty {show(kty)}", "Publish only RSA or EC keys.")
        return
    if not isinstance(key.get("kid"), str) or not key["kid"]:
        add_reject(out, "jwks.kid", f"{name} has no usable kid", "Give the key a kid.")
    if "use" in key and key["use"] != "sig":
        add_reject(out, "jwks.use", f"{name} has use {show(key['use'])}", 'Set use "sig".')
    if "key_ops" in key:
        add_reject(out, "jwks.key_ops", f"{name} has key_ops", "Drop key_ops.")
    if private := [m for m in _PRIVATE_MEMBERS if m in key]:
        detail = f"{name} publishes private members {private}: fatal, the private key is leaked"
        add_reject(out, "jwks.private_material", detail, "Publish public members; replace the key.")
    alg: str = key["alg"] if isinstance(key.get("alg"), str) else repr(key.get("alg"))
    # STS ignores a JWK's alg (the token header decides), so a wrong one is only a house rule.
    if "alg" in key and alg not in (RSA_ALGS if kty == "RSA" else EC_ALGS):
        add_house(out, "jwks.alg", f"{name} has alg {alg} for kty {kty}", "Fix or drop alg.")
    public = _rsa_public(key, name, out) if kty == "RSA" else _ec_public(key, name, alg, out)
    if "x5c" in key and public is not None:  # certificate-only keys: already jwks.key_material
        _check_x5c(key["x5c"], public, name, out)


def _b64url_int(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except ValueError:
        return None


def _rsa_public(key: Mapping[str, Any], name: str, out: list[Finding]) -> PublicKey | None:
    n, e = _b64url_int(key.get("n")), _b64url_int(key.get("e"))
    try:
        if n is None or e is None:
            raise ValueError
        public = rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        add_reject(out, "jwks.key_material", f"{name} has no valid n and e", "Publish n and e.")
        return None
    if n.bit_length() < 2048:
        detail = f"{name} has a {n.bit_length()}-bit modulus"
        add_reject(out, "jwks.rsa_size", detail, "Use an RSA key of at least 2048 bits.")
    return public


def _ec_public(key: Mapping[str, Any], name: str, alg: str, out: list[Finding]) -> PublicKey | None:
    crv = key.get("crv")
    if not isinstance(crv, str) or crv not in _CURVES:
        add_reject(
            out, "jwks.ec_curve", f"{name} has crv {show(crv)}", "Use P-256, P-384 or P-521."
        )
        return None
    curve, curve_alg = _CURVES[crv]
    if alg in EC_ALGS and alg != curve_alg:
        add_house(out, "jwks.ec_curve", f"{name} pairs {crv} with {alg}", f"Set alg {curve_alg}.")
    x, y = _b64url_int(key.get("x")), _b64url_int(key.get("y"))
    try:
        if x is None or y is None:
            raise ValueError
        return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    except ValueError:
        detail = f"{name} has no valid x and y on {crv}"
        add_reject(out, "jwks.key_material", detail, "Publish the key's x and y.")
        return None


def _check_x5c(chain: Any, public: PublicKey, name: str, out: list[Finding]) -> None:
    fix = "Drop x5c, or publish the key's own certificate first."
    try:
        if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
            raise ValueError
        der = base64.b64decode(chain[0], validate=True)
        cert_key = x509.load_der_x509_certificate(der).public_key()
    except (ValueError, binascii.Error):
        add_reject(out, "jwks.x5c", f"{name}: x5c[0] is not a base64 DER certificate", fix)
        return
    except UnsupportedAlgorithm:  # no ValueError: a key type cryptography does not know
        detail = f"{name}: x5c[0] certifies a key of an unknown algorithm, not this key"
        add_reject(out, "jwks.x5c", detail, fix)
        return
    if cert_key != public:
        add_reject(out, "jwks.x5c", f"{name}: x5c[0] certifies a different public key", fix)


def check_discovery(doc: Mapping[str, Any], *, issuer: str) -> list[Finding]:
    """The provider URL's shape and the discovery document STS reads under it."""
    out = check_issuer_url(issuer)
    if doc.get("issuer") != issuer:
        detail = f"the document's issuer {show(doc.get('issuer'))} is not {issuer!r}"
        add_reject(out, "discovery.issuer", detail, "Serve the provider URL as issuer.", iss=issuer)
    jwks_uri = doc.get("jwks_uri")
    parts = split_url(jwks_uri)
    fix = "Serve the JWKS at an absolute https URL on a public host."
    if parts is not None and parts.scheme == "http" and is_loopback_host(parts.hostname or ""):
        detail = f"jwks_uri {jwks_uri!r} is loopback http: fine for local tests, STS needs https"
        add_house(out, "discovery.jwks_uri", detail, fix)
    elif parts is None or parts.scheme != "https" or not parts.hostname:
        add_reject(out, "discovery.jwks_uri", f"jwks_uri {show(jwks_uri)} is not https", fix)
    # STS is only documented to read issuer and jwks_uri; the rest is OIDC Discovery hygiene.
    for rule, member, want in (
        ("discovery.response_types", "response_types_supported", "id_token"),
        ("discovery.subject_types", "subject_types_supported", "public"),
    ):
        if not isinstance(doc.get(member), list) or want not in doc[member]:
            add_house(out, rule, f"{member} is {show(doc.get(member))}", f'List "{want}" in it.')
    algs = doc.get("id_token_signing_alg_values_supported")
    if not isinstance(algs, list) or not algs or not all(a in ALLOWED_ALGS for a in map(str, algs)):
        detail = f"id_token_signing_alg_values_supported is {show(algs)}"
        add_house(out, "discovery.signing_algs", detail, "List the RS*/ES* algs the keys use.")
    return out


def split_url(url: Any) -> SplitResult | None:
    """``urlsplit`` for untrusted input: None for a non-string or a URL it refuses."""
    try:
        return urlsplit(url) if isinstance(url, str) else None
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None


def check_issuer_url(issuer: str) -> list[Finding]:
    """The provider URL's shape: what IAM registers and STS compares ``iss`` with."""
    out: list[Finding] = []
    parts = split_url(issuer) or urlsplit("")
    fix = "Use https://<lowercase host>[/path] with no port, query, fragment or trailing slash."
    # Loopback (http, or https with a test CA) is what config allows for local tests.
    if parts.scheme in ("http", "https") and is_loopback_host(parts.hostname or ""):
        detail = f"issuer {issuer!r} is loopback: fine for local tests, AWS cannot reach it"
        add_house(out, "discovery.issuer_url", detail, fix)
        return out
    host_port = parts.netloc.rpartition("@")[2].rpartition("]")[2]  # past userinfo and IPv6
    path_problem = issuer_path_problem(parts.path.removesuffix("/"))  # "ends with /" says it
    problems = [
        text
        for bad, text in (
            (parts.scheme != "https", "is not https"),
            (not parts.hostname, "has no host"),
            ("@" in parts.netloc, "has user info"),
            (":" in host_port, "has a port"),
            (parts.netloc != parts.netloc.lower(), "has an upper-case host"),
            ("?" in issuer, "has a query"),
            ("#" in issuer, "has a fragment"),
            (issuer.endswith("/"), "ends with '/'"),
            (path_problem is not None, str(path_problem)),
        )
        if bad
    ]
    if problems:
        detail = f"issuer {issuer!r} " + ", ".join(problems)
        add_reject(out, "discovery.issuer_url", detail, fix, iss=issuer)
    return out
