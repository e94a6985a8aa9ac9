"""The OIDC provider's thumbprint `aws plan` registers: the served top intermediate CA's SHA-1.

The issuer has a public-looking name, as `aws plan` requires; its TLS server (trustme chain) runs
on a free loopback port, and a guard that maps the name's port 443 to it stands in for DNS.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.doctor import tls_check
from broker.net.fetch_guard import Guard
from tests.doctor.doctor_fixtures import ToLoopback, crafted_issuer

ISSUER = "https://oidc-test.example.com"


def _sha1(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex()  # noqa: S303


def test_the_thumbprint_is_the_top_intermediate_ca_not_the_leaf(tls_ca: trustme.CA) -> None:
    intermediate = tls_ca.create_child_ca()
    leaf = intermediate.issue_cert("oidc-test.example.com")
    chain = leaf.private_key_and_cert_chain_pem.bytes()
    with crafted_issuer(chain, lambda url: {}, host="oidc-test.example.com") as url:
        guard = ToLoopback(allow_loopback=False, port=urlsplit(url).port or 0)
        endpoint, findings = tls_check.issuer_endpoint(ISSUER, now=int(time.time()), guard=guard)
    assert endpoint.tls12
    assert endpoint.thumbprint == _sha1(intermediate.cert_pem.bytes())
    assert endpoint.thumbprint != _sha1(leaf.cert_chain_pems[0].bytes())
    assert not [f for f in findings if f.rule in ("tls.handshake", "tls.chain")]


def test_no_tls_is_no_thumbprint_and_says_why() -> None:
    with socket.socket() as listener:  # accepts, never speaks TLS
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        guard = ToLoopback(allow_loopback=False, port=listener.getsockname()[1])
        endpoint, findings = tls_check.issuer_endpoint(
            ISSUER, now=int(time.time()), timeout=0.5, guard=guard
        )
    assert endpoint.thumbprint is None
    assert [f.rule for f in findings] == ["tls.handshake"]


def test_a_public_issuer_is_guarded_by_default() -> None:
    # Without a guard of its own, the issuer's: a name resolving inward is never connected.
    guard = Guard.for_issuer(ISSUER, resolver=lambda host, port: ["127.0.0.1"])
    endpoint, findings = tls_check.issuer_endpoint(ISSUER, now=int(time.time()), guard=guard)
    assert endpoint.thumbprint is None
    assert "loopback" in findings[0].detail
