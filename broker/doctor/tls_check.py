"""What STS sees of an issuer's TLS endpoint: TLS 1.2, the served chain, expiry, IAM's thumbprint.

STS validates the certificate against public CAs and falls back to the provider's thumbprint list
(SHA-1 of the top intermediate CA certificate) only when it cannot, or when the host requires
TLS 1.3; so TLS 1.2 must stay on and the chain must be served in order (docs/sts-rules.md).

Python 3.11's ``ssl`` does not expose the served chain, but a TLS 1.2 server sends its
Certificate message in the clear: the handshake runs over memory BIOs and the server's bytes are
read as TLS records on the way through. No validation happens here (the fetch does that); this
module only reports what is served.

Each connection has one deadline for connect and handshake together (a socket timeout alone is
per read, and a server can drip its handshake), and with a :class:`~broker.net.fetch_guard.Guard`
(``doctor``) goes only to a vetted address, as the fetch does.
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning

from broker.net.fetch_guard import Guard, remaining
from broker.sts.catalogue import RETRIEVE_KEY, Finding, reject, warn
from broker.sts.issuer_rules import is_loopback_host

EXPIRY_WARNING_DAYS = 21
_HANDSHAKE, _CHANGE_CIPHER_SPEC, _CERTIFICATE = 22, 20, 11


@dataclass(frozen=True, kw_only=True)
class TlsEndpoint:
    """One TLS endpoint as served; ``chain`` is empty when no handshake completed."""

    host: str
    port: int
    tls12: bool
    chain: list[x509.Certificate]
    thumbprint: str | None  # SHA-1 hex of the top intermediate CA, what IAM's list holds

    def describe(self) -> dict[str, Any]:
        return {
            "endpoint": f"{self.host}:{self.port}",
            "tls12": self.tls12,
            "chain": [c.subject.rfc4514_string() for c in self.chain],
            "not_after": _not_after(self.chain[0]).isoformat() if self.chain else None,
            "thumbprint": self.thumbprint,
        }


def _not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc


def _connect(host: str, port: int, deadline: float, guard: Guard | None) -> socket.socket:
    if guard is not None:
        return guard.connect(host, port, deadline=deadline)
    return socket.create_connection((host, port), timeout=remaining(deadline))


def _tls12_handshake(host: str, port: int, timeout: float, guard: Guard | None = None) -> bytes:
    """The server's raw bytes of a TLS 1.2 handshake (raises ssl.SSLError if 1.2 is refused)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # inspection only: the https fetch validates the chain
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=host)
    received = bytearray()
    deadline = time.monotonic() + timeout
    with _connect(host, port, deadline, guard) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                sock.settimeout(remaining(deadline))
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(
                        "the server closed the connection mid-handshake"
                    ) from None
                received += data
                incoming.write(data)
        sock.sendall(outgoing.read())
    return bytes(received)


def _handshake_messages(stream: bytes) -> Iterator[tuple[int, bytes]]:
    """Plaintext handshake messages of a TLS 1.2 server flight (until ChangeCipherSpec)."""
    payload = bytearray()
    pos = 0
    while pos + 5 <= len(stream):
        kind, length = stream[pos], int.from_bytes(stream[pos + 3 : pos + 5], "big")
        if kind == _CHANGE_CIPHER_SPEC:
            break
        if kind == _HANDSHAKE:
            payload += stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
    pos = 0
    while pos + 4 <= len(payload):
        kind, length = payload[pos], int.from_bytes(payload[pos + 1 : pos + 4], "big")
        yield kind, bytes(payload[pos + 4 : pos + 4 + length])
        pos += 4 + length


_WELL_FORMED = "Serve certificates in strict DER, as every CA issues them."


def served_chain(stream: bytes) -> list[x509.Certificate]:
    """The certificates of the server's Certificate message, in the order served."""
    for kind, body in _handshake_messages(stream):
        if kind != _CERTIFICATE:
            continue
        chain, pos = [], 3  # a 3-byte total length, then 3-byte length + DER per certificate
        while pos + 3 <= len(body):
            length = int.from_bytes(body[pos : pos + 3], "big")
            chain.append(x509.load_der_x509_certificate(body[pos + 3 : pos + 3 + length]))
            pos += 3 + length
        return chain
    return []


def _leaf_over_any_tls(
    host: str, port: int, timeout: float, guard: Guard | None = None
) -> list[x509.Certificate]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # inspection only, as above
    deadline = time.monotonic() + timeout
    with (
        _connect(host, port, deadline, guard) as sock,
        _handshake(ctx, sock, host, deadline) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return [x509.load_der_x509_certificate(der)] if der else []


def _handshake(
    ctx: ssl.SSLContext, sock: socket.socket, host: str, deadline: float
) -> ssl.SSLSocket:
    # CPython bounds a whole blocking handshake by the socket's timeout, not each read.
    sock.settimeout(remaining(deadline))
    return ctx.wrap_socket(sock, server_hostname=host)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def trusted(
    host: str,
    port: int,
    timeout: float = 5.0,
    guard: Guard | None = None,
    *,
    ca_file: Path | None = None,
) -> bool | None:
    """Does the served chain verify for ``host`` against public CAs alone, as STS does (and
    ``ca_file``'s, when given)? None: no answer."""
    import certifi

    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_file is not None:
        ctx.load_verify_locations(cafile=ca_file)
    deadline = time.monotonic() + timeout
    try:
        with _connect(host, port, deadline, guard) as sock:
            _handshake(ctx, sock, host, deadline).close()
    except ssl.SSLCertVerificationError:
        return False
    except OSError:  # refused, reset, timed out: tls.handshake reports that
        return None
    return True


def _anchors(ca_file: Path | None) -> list[x509.Certificate]:
    import certifi

    files = [*([ca_file] if ca_file else []), Path(certifi.where())]
    with warnings.catch_warnings():
        # Public bundles still hold a few certificates cryptography frowns upon (serial <= 0).
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return [c for f in files for c in x509.load_pem_x509_certificates(f.read_bytes())]


def _top_ca(chain: Sequence[x509.Certificate], ca_file: Path | None) -> x509.Certificate | None:
    """The CA whose thumbprint IAM lists: the last served CA, else the leaf's issuer."""
    if len(chain) > 1:
        return chain[-1]
    leaf = chain[0]
    return next((a for a in _anchors(ca_file) if _issued_by(leaf, a)), None)


def _check_chain(chain: Sequence[x509.Certificate], name: str, out: list[Finding]) -> None:
    fix = "Serve the full chain in order: leaf, then intermediates (e.g. fullchain.pem)."
    ders = [c.fingerprint(hashes.SHA256()) for c in chain]
    if len(set(ders)) != len(ders):
        out.append(warn("tls.chain", f"{name} serves a certificate twice", fix))
    for i in range(len(chain) - 1):
        if not _issued_by(chain[i], chain[i + 1]):
            subject = chain[i + 1].subject.rfc4514_string()
            detail = f"{name}: certificate {i + 1} ({subject}) did not issue certificate {i}"
            out.append(warn("tls.chain", detail, fix))


def soonest_expiry(chain: Sequence[x509.Certificate], now: int) -> tuple[x509.Certificate, float]:
    """The certificate of ``chain`` that expires first, and its days left (negative: expired)."""
    soonest = min(chain, key=_not_after)
    left = (_not_after(soonest) - datetime.fromtimestamp(now, UTC)).total_seconds() / 86400
    return soonest, left


def _check_expiry(
    chain: Sequence[x509.Certificate], name: str, now: int, out: list[Finding]
) -> None:
    soonest, left = soonest_expiry(chain, now)
    subject = soonest.subject.rfc4514_string()
    if left < 0:
        detail = f"{name}: {subject} expired {-left:.0f} days ago; STS cannot fetch the keys"
    elif left < EXPIRY_WARNING_DAYS:
        detail = f"{name}: {subject} expires in {left:.1f} days"
    else:
        return
    out.append(warn("tls.expiry", detail, "Renew the certificate (check the ACME timer)."))


def inspect(
    host: str,
    port: int,
    *,
    now: int,
    ca_file: Path | None = None,
    timeout: float = 5.0,
    guard: Guard | None = None,
) -> tuple[TlsEndpoint, list[Finding]]:
    """Handshake with the endpoint as STS would, and report what it serves.

    ``timeout`` bounds each connection as a whole; ``guard`` limits where it may go.
    """
    name = f"{host}:{port}"
    out: list[Finding] = []
    tls12 = True
    try:
        chain = served_chain(_tls12_handshake(host, port, timeout, guard))
    except ssl.SSLError as exc:
        tls12 = False
        detail = f"{name} refuses TLS 1.2 ({exc.reason}): STS then trusts only thumbprints"
        out.append(warn("tls.version", detail, "Enable TLS 1.2 next to TLS 1.3."))
        try:
            chain = _leaf_over_any_tls(host, port, timeout, guard)
        except (OSError, ssl.SSLError) as err:
            out.append(warn("tls.handshake", f"{name}: {err}", "Serve TLS on this host."))
            chain = []
        except ValueError as err:  # OpenSSL took it, cryptography's stricter DER parser not
            out.append(warn("tls.chain", f"{name}: unparsable certificate ({err})", _WELL_FORMED))
            chain = []
    except OSError as exc:
        out.append(warn("tls.handshake", f"{name}: {exc}", "Serve TLS on this host."))
        chain = []
    except ValueError as exc:
        out.append(warn("tls.chain", f"{name}: unparsable certificate ({exc})", _WELL_FORMED))
        chain = []
    thumbprint = None
    if chain:
        _check_chain(chain, name, out)
        _check_expiry(chain, name, now, out)
        top = _top_ca(chain, ca_file)
        thumbprint = top.fingerprint(hashes.SHA1()).hex() if top else None  # noqa: S303 - IAM's own
    endpoint = TlsEndpoint(host=host, port=port, tls12=tls12, chain=chain, thumbprint=thumbprint)
    return endpoint, out


def issuer_endpoint(
    issuer: str, *, now: int, timeout: float = 5.0, guard: Guard | None = None
) -> tuple[TlsEndpoint, list[Finding]]:
    """:func:`inspect` the issuer's own host, reached only where STS could reach it.

    Its ``thumbprint`` is what ``aws plan`` registers on the OIDC provider. ``guard`` defaults
    to the issuer's (:meth:`Guard.for_issuer`); tests pass one that also maps the address.
    """
    parts = urlsplit(issuer)
    port = parts.port or 443
    guard = guard or Guard.for_issuer(issuer)
    return inspect(parts.hostname or "", port, now=now, timeout=timeout, guard=guard)


def private_ca(host: str, port: int) -> list[Finding]:
    """The chain verifies only through --ca-file: STS, trusting public CAs, could not fetch."""
    if is_loopback_host(host):  # a local test issuer uses a private CA by design
        return []
    detail = f"{host}:{port} is trusted only through --ca-file; STS trusts public CAs alone"
    fix = "Serve a certificate from a public CA (e.g. Let's Encrypt) with the full chain."
    return [reject("tls.trust", detail, fix, RETRIEVE_KEY, "InvalidIdentityToken")]
