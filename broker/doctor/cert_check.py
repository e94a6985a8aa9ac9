"""``check-cert``: will the issuer's TLS endpoint keep working for STS in the weeks ahead?

A shared issuer lives for months on one host; the first sign of a lapsed renewal must not be
every CI run failing. The checks are the doctor's (:mod:`broker.doctor.tls_check`), graded for a
timer and an alert rather than for one token:

- ``handshake``: a TLS handshake completes at all (critical otherwise: nothing else can be seen);
- ``expiry``: the first certificate of the served chain to expire, against ``warn_days`` and
  ``critical_days`` (status ``expired`` once past);
- ``chain``: served in order, leaf first, each certificate issued by the next;
- ``tls12``: TLS 1.2 is offered (without it STS trusts only the registered thumbprints);
- ``trust``: the chain verifies for the issuer's name against public CAs (plus ``--ca-file``);
- ``thumbprint``: the SHA-1 of the top intermediate CA is one IAM has registered
  (``oidc_thumbprints``); another one is ``drift``, what a CA changing its intermediate causes.

Connections go through a :class:`~broker.net.fetch_guard.Guard` like the doctor's, with
loopback allowed: check-cert connects only to the host the operator names (never to a URL a
server published), usually from that host itself, where the name may resolve to loopback.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from cryptography import x509

from broker.doctor import tls_check
from broker.doctor.issuer_fetch import FETCH_BUDGET
from broker.net.fetch_guard import Guard, Resolver, system_resolver
from broker.sts.catalogue import Finding
from broker.sts.issuer_rules import split_url

WARN_DAYS = tls_check.EXPIRY_WARNING_DAYS
CRITICAL_DAYS = 7


class Level(IntEnum):
    """How bad a check's outcome is; the report is as bad as its worst check."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Check:
    name: str  # handshake, expiry, chain, tls12, trust, thumbprint
    status: str  # ok, warning, critical, expired, drift, unknown, unregistered
    level: Level
    detail: str


@dataclass(frozen=True, kw_only=True)
class CertReport:
    """What check-cert saw at one issuer's TLS endpoint, and how each check came out."""

    issuer: str
    endpoint: str
    checks: list[Check]
    chain: list[x509.Certificate]
    expires_at: int | None  # unix time the first certificate of the chain expires
    thumbprint: str | None
    registered: list[str]

    @property
    def level(self) -> Level:
        return max((c.level for c in self.checks), default=Level.OK)

    @property
    def ok(self) -> bool:
        return self.level is Level.OK

    def as_json(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "endpoint": self.endpoint,
            "status": self.level.name.lower(),
            "expires_at": self.expires_at,
            "serial": f"{self.chain[0].serial_number:x}" if self.chain else None,
            "chain": [c.subject.rfc4514_string() for c in self.chain],
            "thumbprint": self.thumbprint,
            "registered_thumbprints": self.registered,
            "checks": [
                {"check": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }


def target(issuer: str) -> tuple[str, int]:
    """The https endpoint of ``issuer``; ValueError saying why when it has none."""
    parts = split_url(issuer)
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{issuer!r} is not an https URL: there is no certificate to check")
    return parts.hostname, parts.port or 443  # .port raises ValueError when out of range


def _details(findings: Iterable[Finding], rule: str) -> list[str]:
    return [f.detail for f in findings if f.rule == rule]


def _expiry(
    chain: list[x509.Certificate], now: int, warn_days: float, critical_days: float
) -> Check:
    cert, left = tls_check.soonest_expiry(chain, now)
    subject = cert.subject.rfc4514_string()
    until = cert.not_valid_after_utc.isoformat()
    if left < 0:
        return Check("expiry", "expired", Level.CRITICAL, f"{subject} expired on {until}")
    detail = f"{subject} expires in {left:.1f} days ({until})"
    if left < critical_days:
        return Check("expiry", "critical", Level.CRITICAL, detail)
    if left < warn_days:
        return Check("expiry", "warning", Level.WARNING, detail)
    return Check("expiry", "ok", Level.OK, detail)


def _thumbprint(found: str | None, registered: Collection[str]) -> Check:
    if not registered:
        detail = f"{found or 'top CA unknown'}; no oidc_thumbprints configured to compare with"
        return Check("thumbprint", "unregistered", Level.OK, detail)
    if found is None:
        detail = "the top CA of the chain is unknown (serve the intermediates, or give --ca-file)"
        return Check("thumbprint", "unknown", Level.WARNING, detail)
    if found in registered:
        return Check("thumbprint", "ok", Level.OK, f"{found} is registered")
    detail = (
        f"the top intermediate CA is now {found}, not a registered one "
        f"({', '.join(sorted(registered))}): add it to oidc_thumbprints and to the IAM provider"
    )
    return Check("thumbprint", "drift", Level.WARNING, detail)


_NO_TLS12 = "TLS 1.2 not offered: STS then trusts only the registered thumbprints"


def _trust(verified: bool | None, host: str, ca_file: Path | None) -> Check:
    trust_from = "public CAs" + (" and --ca-file" if ca_file else "")
    if verified:
        return Check("trust", "ok", Level.OK, f"verifies for {host} against {trust_from}")
    if verified is None:
        detail = f"no second handshake to verify the chain for {host}"
        return Check("trust", "unknown", Level.WARNING, detail)
    detail = f"the chain does not verify for {host} against {trust_from}"
    return Check("trust", "critical", Level.CRITICAL, detail)


def check_cert(
    issuer: str,
    *,
    now: int,
    thumbprints: Collection[str] = (),
    warn_days: float = WARN_DAYS,
    critical_days: float = CRITICAL_DAYS,
    ca_file: Path | None = None,
    timeout: float = FETCH_BUDGET,
    resolver: Resolver | None = None,
) -> CertReport:
    """Check the certificate ``issuer`` (an https URL) serves, as of ``now``.

    ``thumbprints`` are the registered ones (hex SHA-1); ``resolver`` replaces ``getaddrinfo``
    for tests (:mod:`broker.net.fetch_guard`). Raises ValueError for a URL that is not https.
    """
    host, port = target(issuer)
    guard = Guard(allow_loopback=True, resolver=resolver or system_resolver)
    endpoint, findings = tls_check.inspect(
        host, port, now=now, ca_file=ca_file, timeout=timeout, guard=guard
    )
    registered = sorted({t.lower() for t in thumbprints})
    chain = endpoint.chain

    def report(checks: list[Check]) -> CertReport:
        expires = tls_check.soonest_expiry(chain, now)[0] if chain else None
        return CertReport(
            issuer=issuer,
            endpoint=f"{host}:{port}",
            checks=checks,
            chain=chain,
            expires_at=int(expires.not_valid_after_utc.timestamp()) if expires else None,
            thumbprint=endpoint.thumbprint,
            registered=registered,
        )

    if not chain:
        why = _details(findings, "tls.handshake") + _details(findings, "tls.chain")
        return report([Check("handshake", "critical", Level.CRITICAL, "; ".join(why))])
    misordered = _details(findings, "tls.chain")
    return report(
        [
            Check("handshake", "ok", Level.OK, f"{len(chain)} certificate(s) served"),
            _expiry(chain, now, warn_days, critical_days),
            Check("chain", "warning", Level.WARNING, "; ".join(misordered))
            if misordered
            else Check("chain", "ok", Level.OK, "leaf first, each issued by the next"),
            Check("tls12", "ok", Level.OK, "TLS 1.2 offered")
            if endpoint.tls12
            else Check("tls12", "warning", Level.WARNING, _NO_TLS12),
            _trust(tls_check.trusted(host, port, timeout, guard, ca_file=ca_file), host, ca_file),
            _thumbprint(endpoint.thumbprint, registered),
        ]
    )


EXPIRY_METRIC = "test_broker_cert_expiry_timestamp_seconds"
OK_METRIC = "test_broker_cert_ok"


def write_textfile(report: CertReport, path: Path) -> None:
    """Write the report for node_exporter's textfile collector, atomically (write, rename)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    labels = ["issuer"]
    expiry = Gauge(
        EXPIRY_METRIC,
        "Unix time the first certificate of the served chain expires.",
        labels,
        registry=registry,
    )
    ok = Gauge(
        OK_METRIC, "1 when every check-cert check passed, else 0.", labels, registry=registry
    )
    if report.expires_at is not None:  # no handshake: no sample, rather than a made-up time
        expiry.labels(report.issuer).set(report.expires_at)
    ok.labels(report.issuer).set(1 if report.ok else 0)
    write_to_textfile(os.fspath(path), registry)
