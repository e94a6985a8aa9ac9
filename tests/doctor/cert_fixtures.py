"""Certificates for check-cert tests: trustme chains for a public-looking issuer name."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from prometheus_client.parser import text_string_to_metric_families

HOST = "oidc-test.example.com"
NOW = datetime.datetime.now(datetime.UTC)


def to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def thumbprint(ca: trustme.CA) -> str:
    cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    return cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - IAM's thumbprint


def served(intermediate: trustme.CA, *, days: float = 90, host: str = HOST, **kwargs: Any) -> bytes:
    """Key, leaf and intermediate, in order, for a leaf valid ``days`` more days."""
    not_after = NOW + datetime.timedelta(days=days)
    not_before = min(NOW, not_after) - datetime.timedelta(days=30)
    leaf = intermediate.issue_cert(host, not_before=not_before, not_after=not_after, **kwargs)
    return leaf.private_key_and_cert_chain_pem.bytes()


def samples(path: Path) -> dict[str, list[tuple[dict[str, str], float]]]:
    families = text_string_to_metric_families(path.read_text())
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in families}
