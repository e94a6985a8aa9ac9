"""doctor --issuer: fetch discovery and JWKS as STS does, inspect TLS, and the broker's self-check."""

from __future__ import annotations

import copy
import datetime
import gzip
import ipaddress
import json
import socket
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from broker.config import Settings
from broker.doctor import diagnose as doctor
from broker.doctor import tls_check
from broker.doctor.issuer_fetch import MAX_DOCUMENT_BYTES
from broker.main import main
from broker.server.app import Broker
from broker.server.self_check import is_fatal, self_check
from broker.sts.catalogue import NOT_VALIDATED, RETRIEVE_KEY, Finding, Severity
from broker.testing.live import StartBroker
from tests.doctor.doctor_fixtures import Doc, Hostile, crafted_issuer, hostile_server, standard_docs
from tests.doctor.negative_tokens import Signer

SIGNER = Signer()


def _sha1(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex()  # noqa: S303


@pytest.fixture
def leaf_pem(tls_ca: trustme.CA) -> bytes:
    return tls_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.bytes()


def _check(url: str, ca_file: Path, **kwargs: Any) -> doctor.DoctorReport:
    return doctor.diagnose(issuer=url, token=None, ca_file=ca_file, now=int(time.time()), **kwargs)


def _rejects(result: doctor.DoctorReport) -> list[str]:
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
    assert tls_check.trusted("127.0.0.1", int(broker.url.rsplit(":", 1)[1])) is False
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
        "jwks over the size cap",
        lambda url: (
            standard_docs(url, None)
            | {"/.well-known/jwks.json": Doc(b" " * MAX_DOCUMENT_BYTES + b"{}")}
        ),
        "fetch.jwks",
        RETRIEVE_KEY,
    ),
    (
        "jwks in an encoding doctor did not offer",
        lambda url: (
            standard_docs(url, None)
            | {"/.well-known/jwks.json": Doc(b"{}", headers={"content-encoding": "br"})}
        ),
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


# -- bounded and guarded fetches (issue 9, point 5) ----------------------------------------------


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every TCP connect and system name lookup this process makes during the test.

    A connect to anything but loopback fails the test on the spot instead of leaving the machine.
    """
    seen: dict[str, list[Any]] = {"connect": [], "getaddrinfo": []}
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        seen["connect"].append(address[:2])
        assert ipaddress.ip_address(address[0]).is_loopback, f"connect to {address}"
        real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen["getaddrinfo"].append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return seen


def diagnose_with(issuer: str, resolver: Any, **kwargs: Any) -> doctor.DoctorReport:
    return doctor.diagnose(
        issuer=issuer, token=None, now=int(time.time()), resolver=resolver, **kwargs
    )


def _fetch_finding(result: doctor.DoctorReport, what: str = "discovery") -> Finding:
    [finding] = [f for f in result.findings if f.rule == f"fetch.{what}"]
    assert (finding.sts_code, finding.sts_message) == ("InvalidIdentityToken", RETRIEVE_KEY)
    return finding


def _answer_404(conn: socket.socket, hostile: Hostile) -> None:
    hostile.read_head(conn)
    conn.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")


def _drip(
    head: bytes, byte: bytes, *, http: bool = True
) -> Callable[[socket.socket, Hostile], None]:
    def respond(conn: socket.socket, hostile: Hostile) -> None:
        if http:
            hostile.read_head(conn)
        conn.sendall(head)
        # One byte every 0.1 s (simulated hostility, not synchronisation): each read answers
        # long before a per-read timeout; at most 30 s so a regression fails instead of hanging.
        for _ in range(300):
            if hostile.stop.wait(0.1):
                return
            conn.sendall(byte)

    return respond


@pytest.mark.parametrize(
    ("label", "respond"),
    [
        ("headers", _drip(b"HTTP/1.1 200 OK\r\nx-drip: ", b"a")),
        ("body", _drip(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n", b" ")),
    ],
    ids=["headers", "body"],
)
def test_a_dripping_server_is_cut_off_at_the_fetch_deadline(
    label: str, respond: Callable[[socket.socket, Hostile], None]
) -> None:
    with hostile_server(respond) as server:
        started = time.monotonic()
        result = diagnose_with(f"http://127.0.0.1:{server.port}", None, budget=1.0)
        took = time.monotonic() - started
    assert took < 10  # does not hang; the deadline is 1 s
    assert "no answer within 1 s" in _fetch_finding(result).detail
    assert result.message == RETRIEVE_KEY


def _gzip_bomb(conn: socket.socket, hostile: Hostile) -> None:
    hostile.read_head(conn)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
    conn.sendall(head + b"connection: close\r\n\r\n")
    squeeze = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    for _ in range(8 << 10):  # 8 GiB of zeros, about 8 MB on the wire, made as it is sent
        if hostile.stop.is_set():
            return
        conn.sendall(squeeze.compress(zeros))


def test_a_gzip_bomb_stops_at_the_size_cap_in_bounded_memory() -> None:
    with hostile_server(_gzip_bomb) as server:
        tracemalloc.start()
        try:
            started = time.monotonic()
            result = diagnose_with(f"http://127.0.0.1:{server.port}", None)
            took = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert f"over {MAX_DOCUMENT_BYTES} bytes (decoded)" in _fetch_finding(result).detail
    assert took < 10  # the cap, not the 5 s deadline, ended it (the finding says so)
    assert peak < 16 * MAX_DOCUMENT_BYTES, peak  # the whole bomb is 8 GiB


def test_gzip_encoded_documents_are_decoded(leaf_pem: bytes, ca_file: Path) -> None:
    def docs(url: str) -> dict[str, Doc]:
        out = standard_docs(url, SIGNER.jwks())
        for doc in out.values():
            doc.body = gzip.compress(doc.payload())
            doc.headers["content-encoding"] = "gzip"
        return out

    with crafted_issuer(leaf_pem, docs) as url:
        result = _check(url, ca_file)
    assert result.accepted, result.findings


INWARD = [
    "127.0.0.1",
    "::1",
    "10.0.0.1",
    "169.254.169.254",
    "0.0.0.0",  # noqa: S104 - an address under test, nothing binds it
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "224.0.0.251",
]


@pytest.mark.parametrize("address", INWARD)
def test_a_public_issuer_resolving_inward_is_refused_without_connecting(
    address: str, outbound: dict[str, list[Any]]
) -> None:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.215.14", address]  # one inward address among public ones is enough

    with hostile_server(_answer_404) as server:
        issuer = f"https://oidc.example.com:{server.port}"
        result = diagnose_with(issuer, resolver)
    detail = _fetch_finding(result).detail
    assert f"oidc.example.com resolves to {ipaddress.ip_address(address)}" in detail
    assert "oidc.example.com" in asked
    assert server.connections == []
    assert outbound["connect"] == []
    assert not result.accepted


@pytest.mark.parametrize(
    "jwks_uri", ["https://169.254.169.254/latest/meta-data", "https://metadata.example/keys"]
)
def test_a_jwks_uri_aimed_inward_is_refused_and_never_contacted(
    jwks_uri: str, leaf_pem: bytes, ca_file: Path, outbound: dict[str, list[Any]]
) -> None:
    # A loopback issuer may use loopback, and nothing else that is not public.
    with crafted_issuer(leaf_pem, lambda url: _discovery_with(url, jwks_uri=jwks_uri)) as url:
        result = diagnose_with(url, lambda host, port: ["169.254.169.254"], ca_file=ca_file)
    assert "169.254.169.254" in _fetch_finding(result, "jwks").detail
    assert {address[0] for address in outbound["connect"]} == {"127.0.0.1"}
    assert "metadata.example" not in outbound["getaddrinfo"]


def test_a_name_is_resolved_once_and_its_vetted_address_connected(
    outbound: dict[str, list[Any]],
) -> None:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    with hostile_server(_answer_404) as server:
        result = diagnose_with(f"http://localhost:{server.port}", resolver)
    assert _fetch_finding(result).detail.endswith("answered 404")
    # The connection went to the vetted address with no second lookup (DNS rebinding), and the
    # request still names the host.
    assert asked == ["localhost"]
    assert "localhost" not in outbound["getaddrinfo"]
    assert outbound["connect"] == [("127.0.0.1", server.port)]
    [head] = server.heads
    assert f"\r\nhost: localhost:{server.port}\r\n".encode() in head.lower()


def test_https_to_a_vetted_address_checks_the_certificate_for_the_name(
    tls_ca: trustme.CA, ca_file: Path, outbound: dict[str, list[Any]]
) -> None:
    # The certificate names only "localhost": the fetch and the TLS inspection, connected to
    # 127.0.0.1, pass only because SNI and the hostname check use the name.
    chain = tls_ca.issue_cert("localhost").private_key_and_cert_chain_pem.bytes()
    docs: Docs = lambda url: standard_docs(url, SIGNER.jwks())
    with crafted_issuer(chain, docs, host="localhost") as url:
        result = diagnose_with(url, lambda host, port: ["127.0.0.1"], ca_file=ca_file)
    assert result.accepted, result.findings
    assert result.info["tls"][0]["endpoint"].startswith("localhost:")
    assert "localhost" not in outbound["getaddrinfo"]


def test_a_redirect_is_reported_and_never_followed(leaf_pem: bytes, ca_file: Path) -> None:
    with hostile_server(_answer_404) as target:
        elsewhere = f"http://127.0.0.1:{target.port}/.well-known/openid-configuration"

        def docs(url: str) -> dict[str, Doc]:
            redirect = Doc(b"", status=302, headers={"location": elsewhere})
            return {"/.well-known/openid-configuration": redirect}

        with crafted_issuer(leaf_pem, docs) as url:
            result = _check(url, ca_file)
    assert "STS follows no redirects" in _fetch_finding(result).detail
    assert target.connections == []


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


def test_a_dripping_tls_handshake_is_cut_off_at_the_deadline() -> None:
    # A TLS record header promising 16 KiB, then a byte every 0.1 s: each read answers in time.
    with hostile_server(_drip(b"\x16\x03\x03\x40\x00", b"\x00", http=False)) as server:
        started = time.monotonic()
        _, findings = tls_check.inspect("127.0.0.1", server.port, now=int(time.time()), timeout=1)
        took = time.monotonic() - started
    assert took < 10  # does not hang; each connection's deadline is 1 s
    assert [f.rule for f in findings] == ["tls.handshake"]


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
    findings = self_check(discovery, jwks, settings.oidc_issuer)
    # loopback http: house notes, since AWS cannot reach it
    notes = {(f.rule, f.severity) for f in findings}
    assert notes == {
        ("discovery.issuer_url", Severity.HOUSE),
        ("discovery.jwks_uri", Severity.HOUSE),
    }
    assert not any(is_fatal(f) for f in findings)


def test_self_check_of_a_public_rsa_issuer_is_clean(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(oidc_issuer="https://oidc-test.example.com", key_algorithm="RS256")
    assert self_check(*_own_documents(settings), settings.oidc_issuer) == []


def test_self_check_calls_published_private_material_fatal(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(oidc_issuer="https://oidc-test.example.com")
    discovery, jwks = _own_documents(settings)
    leaked = copy.deepcopy(jwks)
    leaked["keys"][0]["d"] = SIGNER.ec.as_dict(private=True)["d"]
    fatal = [f for f in self_check(discovery, leaked, settings.oidc_issuer) if is_fatal(f)]
    assert [f.rule for f in fatal] == ["jwks.private_material"]


def test_a_certificate_cryptography_cannot_parse_is_a_finding_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # OpenSSL accepts some DER that cryptography refuses (an over-long length byte): the issuer
    # under examination chooses its certificate, so the parse is stood in for here.
    def unparsable(stream: bytes) -> list[object]:
        raise ValueError("error parsing asn1 value: InvalidLength")

    monkeypatch.setattr(tls_check, "_tls12_handshake", lambda *args, **kwargs: b"")
    monkeypatch.setattr(tls_check, "served_chain", unparsable)
    _, findings = tls_check.inspect("127.0.0.1", 443, now=int(time.time()), timeout=1)
    assert [(f.rule, "unparsable certificate" in f.detail) for f in findings] == [
        ("tls.chain", True)
    ]
