"""Connection limits uvicorn's httptools protocol lacks: header size and time, body time, count.

uvicorn bounds none of these for httptools: its keep-alive timer runs only between requests (and
any byte cancels it), a connection that never sends is never timed out, and the parser buffers a
header of any length. Measured before this module: one 118 MB header took RSS from 70 to 300 MB
and 1 000 clients sending a byte at a time held their connections indefinitely.

:func:`protocol_class` binds a subclass of uvicorn's ``HttpToolsProtocol`` to the limits, with
its own table of connections (one per server), for ``uvicorn.Config(http=...)``. Per connection:

- header phase (from connect, or from the end of the previous request): at most
  ``max_header_bytes`` are fed to the parser (431 beyond), within ``header_timeout`` of the
  connection or of the request's first byte (408; a silent connection is just closed);
- body phase (headers complete to message complete): within ``body_timeout`` (408 if no
  response has started; else closed), which also ends a body nobody reads after an early 413;
- at ``max_connections`` a newcomer closes the connection longest in its header phase that has
  no response in flight (a slow-loris, or an idle keep-alive), or gets 503 if there is none.

An idle keep-alive connection is closed by uvicorn's own ``timeout_keep_alive`` (5 s).
Error answers carry ``Connection: close``; the connection then drains input for a moment before
closing, so the client reads the answer instead of a reset (nginx's lingering close).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from broker.config import Settings
from broker.errors import BrokerError, HeaderTooLarge, RequestTimeout, TooManyConnections

log = logging.getLogger("broker.http")
# How long an answered connection keeps draining input before it closes (lingering close).
LINGER_SECONDS = 1.0


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )


class _Table:
    """One server's connections; ``waiting`` holds those in a header phase, oldest first."""

    def __init__(self) -> None:
        self.open: set[LimitedHttpToolsProtocol] = set()
        self.waiting: dict[LimitedHttpToolsProtocol, None] = {}
        self.draining: set[LimitedHttpToolsProtocol] = set()  # answered, about to close

    def wait(self, conn: LimitedHttpToolsProtocol) -> None:
        self.waiting.pop(conn, None)  # re-insert: the order is when the phase began
        self.waiting[conn] = None

    def forget(self, conn: LimitedHttpToolsProtocol) -> None:
        self.open.discard(conn)
        self.waiting.pop(conn, None)
        self.draining.discard(conn)

    def victim(self) -> LimitedHttpToolsProtocol | None:
        for conn in self.draining:
            return conn
        return next((c for c in self.waiting if c.evictable), None)


def protocol_class(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for one server: these limits and a connection table of its own."""

    class Bound(LimitedHttpToolsProtocol):
        _limits = limits
        _table = _Table()

    return Bound


def _answer(err: BrokerError) -> bytes:
    body = json.dumps(err.body()).encode()
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
    return STATUS_LINE[err.status] + head % len(body) + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    _limits: ClassVar[HttpLimits]
    _table: ClassVar[_Table]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_headers = True  # between requests or inside a request line and headers
        self._began = False  # a byte of the current request has been parsed
        self._reading_body = False
        self._header_bytes = 0
        self._draining = False
        self._completed = 0  # requests parsed to their end on this connection
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def evictable(self) -> bool:
        """In a header phase with no response owed: closing it loses no request in progress."""
        in_flight = self.cycle is not None and not self.cycle.response_complete
        return self._in_headers and not in_flight and not self.pipeline

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        table = self._table
        full = len(table.open) >= self._limits.max_connections
        victim = table.victim() if full else None
        if victim is not None:
            log.debug("connection cap reached: closing %s, longest in its headers", victim.client)
            victim._close()
        table.open.add(self)
        table.wait(self)
        if full and victim is None:
            self._reject(TooManyConnections("the broker is at its connection limit; retry soon"))
            return
        # Armed at once: a connection that never sends a byte is closed too.
        self._arm(self._limits.header_timeout, self._header_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._table.forget(self)
        super().connection_lost(exc)

    def _close(self) -> None:
        self._disarm()
        self._table.forget(self)
        self.transport.close()

    # -- input ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._draining:
            return
        if not self._in_headers:
            super().data_received(data)
        else:
            room = self._limits.max_header_bytes - self._header_bytes
            self._header_bytes += min(len(data), room)
            completed = self._completed
            super().data_received(data[:room] if len(data) > room else data)
            if len(data) > room and not self.transport.is_closing():
                # In headers still, and no request ended inside the allowance: they go on past it
                # (a request that ended there is followed by the next one, pipelined).
                if self._in_headers and self._completed == completed:
                    limit = self._limits.max_header_bytes
                    message = f"request line and headers exceed {limit} bytes; send fewer"
                    self._reject(HeaderTooLarge(message))
                    return
                self.data_received(data[room:])  # the rest, counted against its own allowance
                return
        if self._deadline is None and not self.transport.is_closing():
            # Armed here rather than per parser callback: a request that arrives whole never
            # creates a timer (discovery's hot path, docs/performance.md).
            if self._reading_body:
                self._arm(self._limits.body_timeout, self._body_timed_out)
            elif self._in_headers and (self._began or self._header_bytes):
                # Bytes that start no request (CRLFs between requests) cancel uvicorn's
                # keep-alive timer, so they are held to the header deadline too.
                self._arm(self._limits.header_timeout, self._header_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._began = True

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_headers, self._reading_body = False, True
        self._table.waiting.pop(self, None)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._completed += 1
        self._disarm()
        self._in_headers, self._began, self._reading_body = True, False, False
        self._header_bytes = 0
        self._table.wait(self)

    # -- deadlines -----------------------------------------------------------------------------

    def _arm(self, seconds: float, handler: Callable[[], None]) -> None:
        self._deadline = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_timed_out(self) -> None:
        self._deadline = None
        if not self._began:  # nothing asked: close quietly, like an idle keep-alive
            self._close()
            return
        timeout = self._limits.header_timeout
        self._reject(RequestTimeout(f"request line and headers took over {timeout} s; resend"))

    def _body_timed_out(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is None or cycle.response_started or self.pipeline:
            self._close()  # answered already (an early 413), or another answer is on the wire
            return
        # The app waits for the body: make it see a disconnect, and its answer a no-op.
        cycle.disconnected = True
        cycle.message_event.set()
        timeout = self._limits.body_timeout
        self._reject(RequestTimeout(f"the request body took over {timeout} s; resend"))

    # -- answers -------------------------------------------------------------------------------

    def _reject(self, err: BrokerError) -> None:
        """Answer ``err`` unless another response is on the wire, then drain and close."""
        self._disarm()
        log.debug("%s: %s %s", self.client, err.code, err.message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.disconnected:
            self._close()  # a pipelined request's answer is still due: cut it, never mix two
            return
        self.transport.write(_answer(err))
        if not self.transport.can_write_eof():  # TLS: no half-close, so close outright
            self._close()
            return
        self.transport.write_eof()
        self._draining = True
        self._table.waiting.pop(self, None)
        self._table.draining.add(self)  # the first to make room at the connection cap
        self._deadline = self.loop.call_later(LINGER_SECONDS, self._close)
