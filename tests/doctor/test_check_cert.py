"""check-cert against trustme chains: expiry grades, chain order, TLS 1.2, thumbprint drift.

The issuer is a public-looking name that resolves nowhere; the doctor's resolver hook
(:mod:`broker.net.fetch_guard`) points it at the loopback server, which keeps the name for SNI
and the hostname check. The command line is exercised on a ``localhost`` issuer.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from broker.doctor.cert_check import (
    EXPIRY_METRIC,
    OK_METRIC,
    CertReport,
    Level,
    check_cert,
    write_textfile,
)
from tests.doctor.cert_fixtures import HOST, NOW, samples, served, thumbprint, to_loopback
from tests.doctor.doctor_fixtures import crafted_issuer


@pytest.fixture
def intermediate(tls_ca: trustme.CA) -> trustme.CA:
    return tls_ca.create_child_ca()


def checked(
    chain_pem: bytes, ca_file: Path | None, *, tls13_only: bool = False, **kwargs: Any
) -> CertReport:
    with crafted_issuer(chain_pem, lambda url: {}, host=HOST, tls13_only=tls13_only) as url:
        return check_cert(
            url, now=int(time.time()), ca_file=ca_file, resolver=to_loopback, **kwargs
        )


def statuses(report: CertReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_a_healthy_chain_passes_every_check(intermediate: trustme.CA, ca_file: Path) -> None:
    report = checked(served(intermediate), ca_file, thumbprints=[thumbprint(intermediate)])
    assert statuses(report) == {
        "handshake": "ok",
        "expiry": "ok",
        "chain": "ok",
        "tls12": "ok",
        "trust": "ok",
        "thumbprint": "ok",
    }
    assert report.ok
    assert thumbprint(intermediate) == report.thumbprint
    assert report.endpoint.startswith(f"{HOST}:")


@pytest.mark.parametrize(
    ("days", "status", "level"),
    [
        (30, "ok", Level.OK),
        (20, "warning", Level.WARNING),
        (6, "critical", Level.CRITICAL),
        (-1, "expired", Level.CRITICAL),
    ],
    ids=["30-days", "within-warn-days", "within-critical-days", "expired"],
)
def test_expiry_is_graded_by_warn_and_critical_days(
    days: float, status: str, level: Level, intermediate: trustme.CA, ca_file: Path
) -> None:
    report = checked(served(intermediate, days=days), ca_file, warn_days=21, critical_days=7)
    [expiry] = [c for c in report.checks if c.name == "expiry"]
    assert (status, level) == (expiry.status, expiry.level)
    assert level == report.level
    leaf_expiry = int((NOW + datetime.timedelta(days=days)).timestamp())
    assert report.expires_at is not None
    assert abs(report.expires_at - leaf_expiry) <= 1


def test_a_misordered_chain_is_a_warning(
    tls_ca: trustme.CA, intermediate: trustme.CA, ca_file: Path
) -> None:
    leaf = intermediate.issue_cert(HOST)
    stranger = trustme.CA().cert_pem.bytes()  # served between the leaf and its issuer
    pem = leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes() + stranger
    report = checked(pem + intermediate.cert_pem.bytes(), ca_file)
    [chain] = [c for c in report.checks if c.name == "chain"]
    assert (chain.status, report.level) == ("warning", Level.WARNING)
    assert "did not issue certificate 0" in chain.detail


def test_a_tls13_only_server_does_not_offer_tls12(intermediate: trustme.CA, ca_file: Path) -> None:
    report = checked(served(intermediate), ca_file, tls13_only=True)
    [tls12] = [c for c in report.checks if c.name == "tls12"]
    assert tls12.status == "warning"
    assert tls12.detail.startswith("TLS 1.2 not offered")
    assert statuses(report)["expiry"] == "ok"  # the certificate was still read over TLS 1.3


def test_a_new_intermediate_is_thumbprint_drift(
    tls_ca: trustme.CA, intermediate: trustme.CA, ca_file: Path
) -> None:
    replacement = tls_ca.create_child_ca()
    report = checked(served(replacement), ca_file, thumbprints=[thumbprint(intermediate).upper()])
    [check] = [c for c in report.checks if c.name == "thumbprint"]
    assert (check.status, report.level) == ("drift", Level.WARNING)
    assert thumbprint(replacement) in check.detail
    assert thumbprint(intermediate) in check.detail


def test_a_certificate_for_another_name_does_not_verify(
    intermediate: trustme.CA, ca_file: Path
) -> None:
    report = checked(served(intermediate, host="elsewhere.example.com"), ca_file)
    assert (statuses(report)["trust"], report.level) == ("critical", Level.CRITICAL)


def test_nothing_listening_is_critical_with_no_expiry(ca_file: Path) -> None:
    from broker.testing.live import free_loopback_url

    port = free_loopback_url().rsplit(":", 1)[1]
    url = f"https://{HOST}:{port}"
    report = check_cert(url, now=int(time.time()), ca_file=ca_file, resolver=to_loopback)
    assert [(c.name, c.status) for c in report.checks] == [("handshake", "critical")]
    assert report.expires_at is None


def test_the_textfile_holds_the_expiry_and_the_verdict(
    intermediate: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    report = checked(served(intermediate, days=10), ca_file)
    metrics = tmp_path / "textfile-collector"
    metrics.mkdir()
    path = metrics / "test-broker.prom"
    write_textfile(report, path)
    got = samples(path)
    labels = {"issuer": report.issuer}
    assert [(labels, float(report.expires_at or 0))] == got[EXPIRY_METRIC]
    assert [(labels, 0.0)] == got[OK_METRIC]
    # written beside and renamed: the collector never reads a half-written file
    assert [p.name for p in metrics.iterdir()] == ["test-broker.prom"]


def test_a_lone_leaf_from_an_unknown_ca_cannot_be_compared(tls_ca: trustme.CA) -> None:
    leaf = tls_ca.issue_cert(HOST).private_key_and_cert_chain_pem.bytes()  # no intermediate
    registered = checked(leaf, None, thumbprints=["a" * 40])
    assert statuses(registered)["thumbprint"] == "unknown"
    assert statuses(checked(leaf, None))["thumbprint"] == "unregistered"  # nothing to compare
