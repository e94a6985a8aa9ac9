"""A loopback HTTP server answering POSTs from a script: the broker outages no real broker makes
on demand (a 502 from a proxy, a 503 while it restarts)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any]  # status, JSON body (or a str sent as text)
HANG: Reply = (0, None)  # no answer until the server is torn down: a broker stuck mid-request


class Script:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.released = threading.Event()  # set at teardown: hung requests end then


@contextlib.contextmanager
def scripted(replies: list[Reply]) -> Iterator[tuple[str, Script]]:
    script = Script(list(replies))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            script.requests.append((self.path, dict(self.headers), body))
            status, reply = script.replies.pop(0) if script.replies else (500, "script ended")
            if (status, reply) == HANG:
                script.released.wait()
                self.close_connection = True
                return
            data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "text/plain" if isinstance(reply, str) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        script.released.set()
        server.shutdown()
        server.server_close()
        thread.join(10)
