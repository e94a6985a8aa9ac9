"""Where ``doctor`` may connect: only addresses AWS STS could reach, resolved once, within a deadline.

STS fetches an issuer's documents over the public internet, so it cannot reach a loopback,
private, link-local (169.254.169.254, the cloud metadata service), unspecified, multicast or
reserved address, nor such an IPv4 address wrapped in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``,
IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4, Teredo). ``doctor`` fetches URLs an
issuer publishes (``jwks_uri``), so without this guard anyone could aim it at the machine it
runs on or its network. A loopback issuer (tests, local development) may still use loopback.

The host is resolved here, every address is vetted (one non-public address refuses the host:
a round-robin answer cannot smuggle one in), and the caller connects to a vetted address itself,
never to the name: a second lookup at connect time could answer differently (DNS rebinding).
For https, the caller keeps the name for SNI, certificate checking and the Host header
(:mod:`broker.doctor.issuer_fetch`, :mod:`broker.doctor.tls_check`).

The resolver is a parameter so tests can make a public-looking name resolve to any address; it
only changes what a name resolves to, never what is allowed, and the CLI never sets it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from broker.sts.issuer_rules import is_loopback_host, split_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]  # (host, port) -> IP addresses as text

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local-use, never public
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d


class AddressRefused(OSError):
    """The host resolves to an address STS could not reach; nothing was connected.

    An OSError, so socket code that reports an unreachable host reports this one too.
    """


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for a TCP connection to ``host:port``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _wrapped_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    wrapped = [("IPv4-mapped", ip.ipv4_mapped), ("6to4", ip.sixtofour)]
    if ip.teredo is not None:
        wrapped.append(("Teredo", ip.teredo[1]))
    if ip in _NAT64:
        wrapped.append(("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    elif ip in _IPV4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are judged as themselves
        wrapped.append(("IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return [(kind, v4) for kind, v4 in wrapped if v4 is not None]


def why_not_public(ip: IPAddress) -> str | None:
    """Why STS could not reach ``ip`` from the internet, or None when it could."""
    if isinstance(ip, ipaddress.IPv6Address):
        for kind, v4 in _wrapped_ipv4(ip):
            reason = why_not_public(v4)
            if reason is not None:
                return f"{reason} {v4}, {kind} in IPv6"
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
    # Order matters: Python also calls loopback and link-local addresses private.
    checks = [
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),  # is_global is True for much of 224.0.0.0/4
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),  # e.g. 100.64.0.0/10 (carrier NAT)
    ]
    return next((reason for reason, hit in checks if hit), None)


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value); TimeoutError if none."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    return left


def _resolve_within(resolver: Resolver, host: str, port: int, seconds: float) -> list[str]:
    # getaddrinfo takes no timeout; a daemon thread lets the deadline hold without waiting for it.
    answer: list[Sequence[str] | Exception] = []

    def run() -> None:
        try:
            answer.append(resolver(host, port))
        except Exception as exc:  # noqa: BLE001 - raised again in the caller's thread
            answer.append(exc)

    thread = threading.Thread(target=run, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(seconds)
    if not answer:
        raise TimeoutError(f"resolving {host} took over {seconds:.2g} s")
    if isinstance(answer[0], Exception):
        raise answer[0]
    return list(answer[0])


@dataclass(frozen=True)
class Guard:
    """The addresses one issuer's fetches may reach: public ones, plus loopback for a loopback
    issuer."""

    allow_loopback: bool
    resolver: Resolver = field(default=system_resolver)

    @classmethod
    def for_issuer(cls, issuer: str, resolver: Resolver | None = None) -> Guard:
        parts = split_url(issuer)
        loopback = parts is not None and is_loopback_host(parts.hostname or "")
        return cls(allow_loopback=loopback, resolver=resolver or system_resolver)

    def vet(self, host: str, port: int, *, within: float) -> list[IPAddress]:
        """The addresses of ``host`` to connect to, all reachable by STS; raises AddressRefused,
        TimeoutError when resolving takes over ``within`` seconds, OSError when it fails."""
        literal = True
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            literal = False
            found = _resolve_within(self.resolver, host, port, within)
            try:
                addresses = [ipaddress.ip_address(a) for a in found]
            except ValueError as exc:
                raise OSError(f"{host} resolved to a non-address: {exc}") from None
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        for ip in addresses:
            reason = why_not_public(ip)
            if reason is not None and not (self.allow_loopback and ip.is_loopback):
                named = f"{host} is" if literal else f"{host} resolves to {ip}, which is"
                raise AddressRefused(f"{named} {reason}")
        return addresses

    def connect(self, host: str, port: int, *, deadline: float) -> socket.socket:
        """A TCP connection to a vetted address of ``host``, made before ``deadline``."""
        addresses = self.vet(host, port, within=remaining(deadline))
        error: OSError = OSError(f"{host} resolves to no address")
        for ip in addresses:
            try:
                return socket.create_connection((str(ip), port), timeout=remaining(deadline))
            except TimeoutError:
                raise
            except OSError as exc:  # refused or unreachable: try the next address, as getaddrinfo
                error = exc
        raise error
