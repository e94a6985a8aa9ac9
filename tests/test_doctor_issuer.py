"""doctor --issuer: fetch discovery and JWKS as STS does, inspect TLS, and the broker's self-check."""

from __future__ import annotations

import copy
import datetime
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker import doctor, tls_check
from broker.app import Broker
from broker.cli import main
from broker.config import Settings
from broker.sts_catalogue import NOT_VALIDATED, RETRIEVE_KEY, Severity
from tests.conftest import StartBroker
from tests.doctor_fixtures import Doc, crafted_issuer, standard_docs
from tests.negative_tokens import Signer

SIGNER = Signer()


def _sha1(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex()  # noqa: S303


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def leaf_pem(tls_ca: trustme.CA) -> bytes:
    return tls_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.bytes()


def _check(url: str, ca_file: Path, **kwargs: Any) -> doctor.Report:
    return doctor.diagnose(issuer=url, token=None, ca_file=ca_file, now=int(time.time()), **kwargs)


def _rejects(result: doctor.Report) -> list[str]:
    return [f.rule for f in result.findings if f.severity is Severity.REJECT]


# -- a real broker -----------------------------------------------------------------------------


def test_a_live_https_broker_passes_and_the_thumbprint_is_its_ca(
    live_broker: StartBroker, tls_ca: trustme.CA, ca_file: Path
) -> None:
    broker = live_broker(tls=tls_ca)
    args = ["doctor", "--issuer", broker.url, "--ca-file", str(ca_file), "--json"]
    result = CliRunner().invoke(main, args)
    body = json.loads(result.output)
    assert (result.exit_code, body["outcome"]) == (0, "accept"), body
    [endpoint] = body["info"]["tls"]
    assert endpoint["tls12"] is True
    assert _sha1(tls_ca.cert_pem.bytes()) == endpoint["thumbprint"]
    # Only --ca-file made the fetch work; on loopback (a local test issuer) that is no finding.
    assert tls_check.publicly_trusted("127.0.0.1", int(broker.url.rsplit(":", 1)[1])) is False
    assert "tls.trust" not in {f["rule"] for f in body["findings"]}


def test_a_public_issuer_on_a_private_ca_is_what_sts_cannot_fetch() -> None:
    [finding] = tls_check.private_ca("oidc.example.com", 443)
    assert (finding.severity, finding.sts_code) == (Severity.REJECT, "InvalidIdentityToken")
    assert finding.sts_message == RETRIEVE_KEY
    assert doctor.rank(finding) > doctor.rank(replace(finding, rule="tls.expiry"))


def test_without_the_private_ca_the_fetch_fails_as_sts_would(
    live_broker: StartBroker, tls_ca: trustme.CA
) -> None:
    broker = live_broker(tls=tls_ca)
    result = CliRunner().invoke(main, ["doctor", "--issuer", broker.url])
    assert result.exit_code == 1
    assert f"outcome: InvalidIdentityToken: {RETRIEVE_KEY}" == result.output.splitlines()[-1]


# -- crafted issuers ---------------------------------------------------------------------------

Docs = Callable[[str], dict[str, Doc]]


def _jwks_with(**members: Any) -> dict[str, Any]:
    jwks = SIGNER.jwks()
    jwks["keys"][0].update(members)
    return jwks


def _discovery_with(url: str, **members: Any) -> dict[str, Doc]:
    docs = standard_docs(url, SIGNER.jwks())
    docs["/.well-known/openid-configuration"].body.update(members)
    return docs


CRAFTED: list[tuple[str, Docs, str, str]] = [
    (
        "private key published",
        lambda url: standard_docs(url, {"keys": [SIGNER.ec.as_dict(private=True) | {"kid": "k"}]}),
        "jwks.private_material",
        RETRIEVE_KEY,
    ),
    (
        "key_ops",
        lambda url: standard_docs(url, _jwks_with(key_ops=["verify"])),
        "jwks.key_ops",
        NOT_VALIDATED,
    ),
    ("use enc", lambda url: standard_docs(url, _jwks_with(use="enc")), "jwks.use", RETRIEVE_KEY),
    (
        "101 RSA keys",
        lambda url: standard_docs(
            url, {"keys": [SIGNER.jwks()["keys"][1] | {"kid": f"r{i}"} for i in range(101)]}
        ),
        "jwks.key_count",
        RETRIEVE_KEY,
    ),
    (
        "discovery redirects",
        lambda url: {
            "/.well-known/openid-configuration": Doc(
                b"", status=302, headers={"location": f"{url}/elsewhere"}
            )
        },
        "fetch.discovery",
        RETRIEVE_KEY,
    ),
    (
        "jwks not JSON",
        lambda url: standard_docs(url, None) | {"/.well-known/jwks.json": Doc(b"<html>")},
        "fetch.jwks",
        RETRIEVE_KEY,
    ),
    (
        "jwks_uri with a NUL byte",
        lambda url: _discovery_with(url, jwks_uri=f"{url}/\u0000x"),
        "fetch.jwks",
        RETRIEVE_KEY,
    ),
    (
        "jwks_uri of 70 000 characters",
        lambda url: _discovery_with(url, jwks_uri=f"{url}/{'a' * 70_000}"),
        "fetch.jwks",
        RETRIEVE_KEY,
    ),
    (
        "jwks nested too deep",
        lambda url: standard_docs(url, None) | {"/.well-known/jwks.json": Doc(b"[" * 10_000)},
        "fetch.jwks",
        RETRIEVE_KEY,
    ),
    (
        "jwks behind auth",
        lambda url: standard_docs(url, None) | {"/.well-known/jwks.json": Doc({}, status=401)},
        "fetch.jwks",
        RETRIEVE_KEY,
    ),
]


@pytest.mark.parametrize(("label", "docs", "rule", "message"), CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_issuer_breakage_is_diagnosed(
    label: str, docs: Docs, rule: str, message: str, leaf_pem: bytes, ca_file: Path
) -> None:
    with crafted_issuer(leaf_pem, docs) as url:
        result = _check(url, ca_file)
    assert rule == _rejects(result)[0]
    assert ("InvalidIdentityToken", message) == (result.outcome, result.message)


@pytest.mark.parametrize(
    ("label", "change", "rule"),
    [
        ("trailing slash", lambda url: {"issuer": url + "/"}, "discovery.issuer"),
        ("port differs", lambda url: {"issuer": url.rsplit(":", 1)[0] + ":1"}, "discovery.issuer"),
        ("upper case", lambda url: {"issuer": url.replace("https", "HTTPS")}, "discovery.issuer"),
        ("query", lambda url: {"issuer": url + "?tenant=a"}, "discovery.issuer"),
        (
            "jwks_uri public http",
            lambda url: {"jwks_uri": "http://oidc.example.com/k"},
            "discovery.jwks_uri",
        ),
        (
            "jwks_uri relative",
            lambda url: {"jwks_uri": "/.well-known/jwks.json"},
            "discovery.jwks_uri",
        ),
    ],
)
def test_issuer_and_jwks_uri_must_match_byte_for_byte(
    label: str, change: Callable[[str], dict[str, str]], rule: str, leaf_pem: bytes, ca_file: Path
) -> None:
    def docs(url: str) -> dict[str, Doc]:
        out = standard_docs(url, SIGNER.jwks())
        out["/.well-known/openid-configuration"].body.update(change(url))
        return out

    with crafted_issuer(leaf_pem, docs) as url:
        result = _check(url, ca_file)
    assert rule == _rejects(result)[0]
    assert not result.accepted


def test_a_slow_issuer_warns_and_one_over_budget_is_rejected(
    leaf_pem: bytes, ca_file: Path
) -> None:
    def slow(delay: float) -> Docs:
        def docs(url: str) -> dict[str, Doc]:
            out = standard_docs(url, SIGNER.jwks())
            out["/.well-known/jwks.json"].delay = delay
            return out

        return docs

    with crafted_issuer(leaf_pem, slow(0.3)) as url:
        warned = _check(url, ca_file, budget=1.0)
    with crafted_issuer(leaf_pem, slow(1.5)) as url:
        rejected = _check(url, ca_file, budget=1.0)
    assert warned.accepted
    assert "fetch.time" in {f.rule for f in warned.findings}
    assert _rejects(rejected) == ["fetch.jwks"]
    [timeout] = [f for f in rejected.findings if f.rule == "fetch.jwks"]
    assert "no answer within 1 s" in timeout.detail


def test_an_unparsable_issuer_url_is_a_finding_not_a_traceback() -> None:
    # urlsplit raises "Invalid IPv6 URL" on an unclosed bracket; nothing is fetched.
    result = doctor.diagnose(issuer="https://[oidc.example.com", token=None, now=int(time.time()))
    assert {"discovery.issuer_url", "fetch.discovery"} <= set(_rejects(result))
    assert result.info["tls"] == []


def test_an_unparsable_jwks_uri_is_a_fetch_failure(leaf_pem: bytes, ca_file: Path) -> None:
    def docs(url: str) -> dict[str, Doc]:
        out = standard_docs(url, SIGNER.jwks())
        out["/.well-known/openid-configuration"].body["jwks_uri"] = "https://[127.0.0.1/k"
        return out

    with crafted_issuer(leaf_pem, docs) as url:
        result = _check(url, ca_file)
    assert _rejects(result) == ["discovery.jwks_uri", "fetch.jwks"]
    assert len(result.info["tls"]) == 1  # the issuer's endpoint; the broken URL is skipped


# -- TLS -----------------------------------------------------------------------------------------


def test_an_intermediate_is_the_thumbprint_and_an_ordered_chain_passes(
    tls_ca: trustme.CA, ca_file: Path
) -> None:
    intermediate = tls_ca.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1")
    docs: Docs = lambda url: standard_docs(url, SIGNER.jwks())
    with crafted_issuer(leaf.private_key_and_cert_chain_pem.bytes(), docs) as url:
        result = _check(url, ca_file)
    assert result.accepted
    assert not [f for f in result.findings if f.rule.startswith("tls.")]
    assert _sha1(intermediate.cert_pem.bytes()) == result.info["tls"][0]["thumbprint"]


def test_a_chain_out_of_order_and_a_cert_near_expiry_are_flagged(
    tls_ca: trustme.CA, ca_file: Path
) -> None:
    intermediate = tls_ca.create_child_ca()
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)
    leaf = intermediate.issue_cert("127.0.0.1", not_after=soon)
    stranger = trustme.CA().cert_pem.bytes()
    served = leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes() + stranger
    served += intermediate.cert_pem.bytes()
    with crafted_issuer(served, lambda url: standard_docs(url, SIGNER.jwks())) as url:
        result = _check(url, ca_file)
    tls = {f.rule: f for f in result.findings if f.rule.startswith("tls.")}
    assert {"tls.chain", "tls.expiry"} == set(tls)
    assert (
        "expires in 9." in tls["tls.expiry"].detail or "expires in 10." in tls["tls.expiry"].detail
    )
    assert result.accepted  # STS still validates the chain here; these are warnings


def test_a_tls13_only_endpoint_is_flagged(leaf_pem: bytes, ca_file: Path) -> None:
    docs: Docs = lambda url: standard_docs(url, SIGNER.jwks())
    with crafted_issuer(leaf_pem, docs, tls13_only=True) as url:
        result = _check(url, ca_file)
    assert [f.rule for f in result.findings if f.rule.startswith("tls.")] == ["tls.version"]
    assert result.info["tls"][0]["tls12"] is False


# -- the broker's own documents ----------------------------------------------------------------


def _own_documents(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    broker = Broker(settings)
    return json.loads(broker.discovery.body), json.loads(broker.ring.jwks.body)


def test_self_check_of_the_dev_default_has_no_fatal_finding(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    discovery, jwks = _own_documents(settings)
    findings = doctor.self_check(discovery, jwks, settings.oidc_issuer)
    # loopback http: house notes, since AWS cannot reach it
    notes = {(f.rule, f.severity) for f in findings}
    assert notes == {
        ("discovery.issuer_url", Severity.HOUSE),
        ("discovery.jwks_uri", Severity.HOUSE),
    }
    assert not any(doctor.is_fatal(f) for f in findings)


def test_self_check_of_a_public_rsa_issuer_is_clean(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(oidc_issuer="https://oidc-test.example.com", key_algorithm="RS256")
    assert doctor.self_check(*_own_documents(settings), settings.oidc_issuer) == []


def test_self_check_calls_published_private_material_fatal(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(oidc_issuer="https://oidc-test.example.com")
    discovery, jwks = _own_documents(settings)
    leaked = copy.deepcopy(jwks)
    leaked["keys"][0]["d"] = SIGNER.ec.as_dict(private=True)["d"]
    fatal = [
        f for f in doctor.self_check(discovery, leaked, settings.oidc_issuer) if doctor.is_fatal(f)
    ]
    assert [f.rule for f in fatal] == ["jwks.private_material"]
