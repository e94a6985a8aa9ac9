"""Durable audit of every mint attempt, with group commit.

One writer thread owns a store (its own SQLite connection). Requests put records on a queue; the writer takes
everything queued, commits it in one transaction (fsync), then releases every waiting request at
once. So a token is never returned before its record is on disk, yet throughput does not pay
one fsync per token (docs/performance.md: no linger; the batch is whatever queued meanwhile).

Refusals before authentication carry no caller to hold to account and cost an attacker nothing,
so they are counted, not recorded one by one: per client address, error and minute, for at most
``MAX_REFUSAL_CLIENTS`` addresses a minute (the rest count under ``*``). A flood adds at most a
few rows a minute, however fast it is.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable

from broker.errors import AuditUnavailable
from broker.store import AuditRecord, RefusalCount, Store, StoreError

log = logging.getLogger("broker.audit")
_MAX_BATCH = 1024
MAX_REFUSAL_CLIENTS = 32
OTHER_CLIENTS = "*"


_Item = tuple[AuditRecord, asyncio.Future[None] | None]
_Batch = list[_Item]
_Tally = dict[tuple[int, str, str], int]
_Handover = tuple[_Batch, _Tally]


class AuditLog:
    def __init__(self, open_store: Callable[[], Store]) -> None:
        """``open_store`` gives the writer's own store: called once, by ``start``."""
        self._open_store = open_store
        self._queue: queue.SimpleQueue[_Handover | None] = queue.SimpleQueue()
        # Records of one event-loop iteration go to the writer together (measured: handing
        # them over one by one made most commits a batch of one).
        self._pending: _Batch = []
        self._tally: _Tally = {}
        self._minute_clients: tuple[int, set[str]] = (0, set())
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Opened here, not in the thread: a store that cannot be opened must fail startup,
        # not kill the writer later and leave every mint waiting on a dead thread.
        store = self._open_store()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(store,), name="audit-writer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            if self._pending or self._tally:
                self._hand_over()
            self._queue.put(None)
            self._thread.join(30)
            self._thread = None

    async def commit(self, record: AuditRecord) -> None:
        """Return once the record is durable; AuditUnavailable if it cannot be."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add((record, future))
        await future

    def note(self, record: AuditRecord) -> None:
        """Record without waiting (refusals: nothing is handed out that needs the proof)."""
        self._add((record, None))

    def count_refusal(self, client: str, error: str, at: float) -> None:
        """Count a refusal before authentication (see the module docstring)."""
        minute = int(at) // 60 * 60
        current, clients = self._minute_clients
        if minute != current:
            current, clients = minute, set()
            self._minute_clients = (current, clients)
        if client not in clients:
            if len(clients) >= MAX_REFUSAL_CLIENTS:
                client = OTHER_CLIENTS
            else:
                clients.add(client)
        self._schedule()
        key = (minute, client, error)
        self._tally[key] = self._tally.get(key, 0) + 1

    def _add(self, item: _Item) -> None:
        self._schedule()
        self._pending.append(item)

    def _schedule(self) -> None:
        if not self._pending and not self._tally and self._loop is not None:
            self._loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        batch, self._pending = self._pending, []
        tally, self._tally = self._tally, {}
        self._queue.put((batch, tally))

    def _run(self, store: Store) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, tally = list(first[0]), dict(first[1])
                stop = False
                while len(batch) < _MAX_BATCH:  # whatever queued during the last commit
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.extend(more[0])
                    for key, count in more[1].items():
                        tally[key] = tally.get(key, 0) + count
                self._write(store, batch, tally)
                if stop:
                    return
        finally:
            store.close()

    def _write(self, store: Store, batch: _Batch, tally: _Tally) -> None:
        error: StoreError | None = None
        refusals = [RefusalCount(*key, count) for key, count in tally.items()]
        try:
            store.write_audit([record for record, _ in batch], refusals)
        except StoreError as exc:  # disk full, I/O error: withhold the tokens, keep running
            log.error("audit commit of %d records failed: %s", len(batch), exc)
            error = exc
        except Exception as exc:  # a bug must not kill the writer and leave every mint waiting
            log.exception("audit commit of %d records failed", len(batch))
            error = StoreError(f"audit writer error: {exc}")
        waiting = [future for _, future in batch if future is not None]
        if waiting and self._loop is not None:
            self._loop.call_soon_threadsafe(_release, waiting, error)


def _release(futures: list[asyncio.Future[None]], error: StoreError | None) -> None:
    for future in futures:
        if future.done():  # the client went away
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(AuditUnavailable(f"audit store failed ({error}); try again"))
