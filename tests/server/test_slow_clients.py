"""Slow and oversized requests (broker/server/http_limits.py): capped headers, header and body deadlines,
and a connection cap that makes room by closing a slow client, not by refusing a fast one.

Raw sockets, because an HTTP client library would not trickle, stall or overflow on purpose.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from broker.testing.live import LiveBroker, StartBroker

DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/.well-known/jwks.json"
DEADLINE = 5.0  # for waiting on a condition only; never a timing claim


class Raw:
    """One client connection that writes exactly the bytes it is given."""

    def __init__(self, broker: LiveBroker) -> None:
        url = urlsplit(broker.url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=DEADLINE)

    def send(self, data: bytes) -> bool:
        """False once the broker has closed its side (it may answer before we finish)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def readable(self, timeout: float = 0.0) -> bool:
        """Whether the broker has answered or closed, within ``timeout``."""
        return bool(select.select([self.sock], [], [], timeout)[0])

    def read_until_closed(self) -> bytes:
        chunks = []
        while chunk := self.sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


Connect = Callable[[LiveBroker], Raw]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Open raw connections to a broker; all closed when the test ends."""
    opened: list[Raw] = []

    def open_one(broker: LiveBroker) -> Raw:
        opened.append(Raw(broker))
        return opened[-1]

    yield open_one
    for conn in opened:
        conn.sock.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def assert_error_answer(raw: bytes, status: int, code: str) -> None:
    assert raw.count(b"HTTP/1.1 ") == 1, raw  # exactly one answer, then the close
    got, headers, body = parse(raw)
    assert (got, body["error"]) == (status, code), raw
    assert set(body) == {"error", "message"}
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"


def trickle_until_answered(conn: Raw, data: bytes, pause: float = 0.02) -> int:
    """Send one byte at a time, polling for the broker's answer; the bytes sent before it."""
    deadline = time.monotonic() + DEADLINE
    for sent, byte in enumerate(data):
        if conn.readable(pause) or not conn.send(bytes([byte])):
            return sent
        assert time.monotonic() < deadline, "the broker never answered"
    raise AssertionError("all bytes went through without an answer")


REQUEST_START = b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-Slow: "


def test_an_oversized_header_gets_431_before_the_client_has_sent_it(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker()
    limit = broker.settings.max_header_bytes
    conn = connect(broker)
    total, sent = 1 << 20, 0
    assert conn.send(REQUEST_START)
    while sent < total and not conn.readable(0.01) and conn.send(b"a" * 4096):
        sent += 4096
    assert sent < total - 4096, "the broker kept reading a 1 MB header"
    assert sent <= limit + 65536  # the allowance plus what the socket buffers held
    assert_error_answer(conn.read_until_closed(), 431, "header_too_large")


def test_a_large_header_under_the_cap_is_served(live_broker: StartBroker) -> None:
    broker = live_broker()
    big = "a" * (broker.settings.max_header_bytes - 1024)
    assert broker.client.get("/healthz", headers={"X-Big": big}).status_code == 200


def test_discovery_and_jwks_answer_while_200_trickling_clients_hold_connections(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker()
    tricklers = [connect(broker) for _ in range(200)]
    for conn in tricklers:
        assert conn.send(REQUEST_START)
    for _ in range(5):  # every trickler one more header byte, then the documents again
        for conn in tricklers:
            assert conn.send(b"a")
        assert broker.client.get(DISCOVERY).status_code == 200
        assert broker.client.get(JWKS).status_code == 200
    # Still held, neither answered nor closed: they are slow, not yet over any limit.
    assert not any(conn.readable() for conn in tricklers)


def test_a_trickling_client_gets_408_and_is_closed_at_the_header_deadline(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker(header_timeout_seconds=0.5)
    conn = connect(broker)
    # Each byte arrives well within any idle timeout; only a deadline for the whole header ends it.
    sent = trickle_until_answered(conn, REQUEST_START + b"a" * 10_000)
    assert sent > 5
    assert_error_answer(conn.read_until_closed(), 408, "request_timeout")


def test_a_silent_connection_is_closed_at_the_header_deadline_without_an_answer(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker(header_timeout_seconds=0.5)
    conn = connect(broker)
    assert conn.readable(DEADLINE)
    assert conn.read_until_closed() == b""


def test_a_trickling_body_gets_408_at_the_body_deadline_and_one_answer_only(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker(body_timeout_seconds=0.5)
    conn = connect(broker)
    body = json.dumps({"auth_token": "p" * 500}).encode()
    head = (
        b"POST /session/create HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    assert conn.send(head)
    assert trickle_until_answered(conn, body) < len(body)
    assert_error_answer(conn.read_until_closed(), 408, "request_timeout")


def test_a_huge_declared_body_is_refused_with_413_before_any_of_it_is_sent(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker()
    conn = connect(broker)
    head = (
        b"POST /session/create HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\n\r\n"
    )
    assert conn.send(head)
    assert conn.readable(DEADLINE)
    status, _, body = parse(conn.sock.recv(65536))
    assert (status, body["error"]) == (413, "body_too_large")


def test_a_huge_chunked_body_is_refused_with_413_before_the_client_has_sent_it(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker()
    conn = connect(broker)
    head = (
        b"POST /session/create HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    assert conn.send(head)
    chunk, total, sent = b"1000\r\n" + b"a" * 4096 + b"\r\n", 1 << 20, 0
    while sent < total and not conn.readable(0.01) and conn.send(chunk):
        sent += 4096
    assert sent < total - 4096, "the broker kept reading a 1 MB body"
    status, _, body = parse(conn.sock.recv(65536))
    assert (status, body["error"]) == (413, "body_too_large")


def test_at_the_connection_cap_the_oldest_connection_still_in_its_headers_makes_room(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker(max_connections=8)
    slow = [connect(broker) for _ in range(8)]
    for conn in slow:
        assert conn.send(REQUEST_START)
    newcomer = connect(broker)
    assert newcomer.send(b"GET /healthz HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
    status, _, body = parse(newcomer.read_until_closed())
    assert (status, body) == (200, {"status": "ok"})
    oldest, *others = slow
    assert oldest.readable(DEADLINE)
    assert oldest.read_until_closed() == b""  # closed to make room, no answer owed
    assert not any(conn.readable() for conn in others)


def test_at_the_connection_cap_with_every_connection_busy_a_newcomer_gets_503(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker(max_connections=8)
    head = (
        b"POST /session/create HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n"
    )
    busy = [connect(broker) for _ in range(8)]
    for conn in busy:
        assert conn.send(head)
    for conn in busy:  # "100 Continue": headers in, the broker is waiting for this body
        assert conn.readable(DEADLINE)
        assert conn.sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
    newcomer = connect(broker)
    newcomer.send(b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n")
    assert_error_answer(newcomer.read_until_closed(), 503, "too_many_connections")
    assert not any(conn.readable() for conn in busy)


@pytest.mark.parametrize("path", [DISCOVERY, JWKS, "/healthz"])
def test_keep_alive_requests_still_work_under_the_limits(
    live_broker: StartBroker, path: str
) -> None:
    broker = live_broker(header_timeout_seconds=0.5)
    for _ in range(3):  # the same pooled connection: each request starts a fresh header phase
        assert broker.client.get(path).status_code == 200


def test_bytes_between_requests_cannot_hold_a_keep_alive_connection_open(
    live_broker: StartBroker, connect: Connect
) -> None:
    # A CRLF starts no request but cancels uvicorn's keep-alive timer: the header deadline holds.
    broker = live_broker(header_timeout_seconds=0.5)
    conn = connect(broker)
    assert conn.send(b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n")
    assert conn.readable(DEADLINE)
    assert conn.sock.recv(65536).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + DEADLINE
    while conn.send(b"\r\n") and not conn.readable(0.1):
        assert time.monotonic() < deadline, "the connection stayed open"
    assert conn.read_until_closed() == b""


def test_pipelined_requests_each_under_the_header_cap_are_all_answered(
    live_broker: StartBroker, connect: Connect
) -> None:
    broker = live_broker(max_header_bytes=4096)
    conn = connect(broker)
    request = b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n"
    assert conn.send(
        request * 2 + b"GET /healthz HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n"
    )
    answers = conn.read_until_closed()
    assert answers.count(b"HTTP/1.1 200") == 3
