"""Durable audit of every mint attempt, with group commit.

One writer thread owns a SQLite connection. Requests put records on a queue; the writer takes
everything queued, commits it in one transaction (fsync), then releases every waiting request at
once. So a token is never returned before its record is on disk, yet throughput does not pay
one fsync per token (shared/perf-notes.md: no linger; the batch is whatever queued meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from pathlib import Path

from broker import store
from broker.errors import AuditUnavailable

log = logging.getLogger("broker.audit")
_MAX_BATCH = 1024


_Item = tuple[store.AuditRecord, asyncio.Future[None] | None]
_Batch = list[_Item]


class AuditLog:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        # Records of one event-loop iteration go to the writer together (measured: handing
        # them over one by one made most commits a batch of one).
        self._pending: _Batch = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Opened here, not in the thread: a store that cannot be opened must fail startup,
        # not kill the writer later and leave every mint waiting on a dead thread.
        conn = store.connect(self._data_dir)
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run, args=(conn,), name="audit-writer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            if self._pending:
                self._hand_over()
            self._queue.put(None)
            self._thread.join(30)
            self._thread = None

    async def commit(self, record: store.AuditRecord) -> None:
        """Return once the record is durable; AuditUnavailable if it cannot be."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add((record, future))
        await future

    def note(self, record: store.AuditRecord) -> None:
        """Record without waiting (refusals: nothing is handed out that needs the proof)."""
        self._add((record, None))

    def _add(self, item: _Item) -> None:
        if not self._pending and self._loop is not None:
            self._loop.call_soon(self._hand_over)
        self._pending.append(item)

    def _hand_over(self) -> None:
        batch, self._pending = self._pending, []
        self._queue.put(batch)

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = list(first)
                stop = False
                while len(batch) < _MAX_BATCH:  # whatever queued during the last commit
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.extend(more)
                self._write(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: _Batch) -> None:
        error: sqlite3.Error | None = None
        try:
            store.write_audit(conn, [record for record, _ in batch])
        except sqlite3.Error as exc:  # disk full, I/O error: withhold the tokens, keep running
            log.error("audit commit of %d records failed: %s", len(batch), exc)
            error = exc
        waiting = [future for _, future in batch if future is not None]
        if waiting and self._loop is not None:
            self._loop.call_soon_threadsafe(_release, waiting, error)


def _release(futures: list[asyncio.Future[None]], error: sqlite3.Error | None) -> None:
    for future in futures:
        if future.done():  # the client went away
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(AuditUnavailable(f"audit store failed ({error}); try again"))
