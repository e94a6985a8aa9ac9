"""Logs: one JSON object per line, with the request id, and never a secret, token or key.

Redaction sits in the formatter, the last step before a line is written, so nothing that any
module (ours, uvicorn's, a library's) logs can carry a bearer, a JWT or PEM material out.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# Every bearer that authenticates is spelled only with these characters: a session body is
# canonical base64url (broker/callers/federation.py) and a secret, otb_<kind>_<id>_<token_urlsafe>,
# is compared whole by digest (broker/callers/credentials.py); so no working bearer escapes the pattern.
_SECRETS = re.compile(
    r"(otb_[A-Za-z0-9_-]+|fps_[A-Za-z0-9_-]+"  # credential secrets, session bearers
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"  # JWTs
    r"|-----BEGIN [A-Z ]+-----[\s\S]*?-----END [A-Z ]+-----)"  # PEM blocks
)


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


# A random per-process prefix and a counter: unique across restarts, no syscall per request.
_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):08x}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if (rid := request_id.get()) is not None:
            line["request_id"] = rid
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
