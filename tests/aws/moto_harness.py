"""moto in server mode: the AWS IAM, S3 and STS control plane for the bring-up tests.

A ``moto_server`` process on a free loopback port, with moto's request recorder on, so a test
can list every AWS call the command under test made (``calls``) and assert that a refusal made
none. Always torn down.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3

MOTO_ACCOUNT = "123456789012"  # moto's default account
READ_METHODS = ("GET", "HEAD")
_LISTENING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")


@dataclass(frozen=True)
class Call:
    service: str  # iam, s3, sts
    action: str  # the Query API action, or "<METHOD> <path>?<query>" for S3

    @property
    def mutating(self) -> bool:
        if self.service == "s3":
            return self.action.split(" ", 1)[0] not in READ_METHODS
        return not self.action.startswith(("Get", "List"))


@dataclass(frozen=True)
class MotoServer:
    url: str
    recording: Path

    def env(self) -> dict[str, str]:
        """The environment a subprocess needs to talk to this server (and only to it)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def calls(self) -> list[Call]:
        """Every AWS request the server answered since the last ``forget_calls``."""
        if not self.recording.exists():
            return []
        out = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            out.append(_call(entry))
        return out

    def forget_calls(self) -> None:
        self.recording.write_text("")


def _call(entry: dict[str, Any]) -> Call:
    auth = {k.lower(): v for k, v in entry["headers"].items()}.get("authorization", "")
    scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    service = scope.group(1) if scope else "?"
    if service == "s3":
        parts = urlsplit(entry["url"])
        query = f"?{parts.query}" if parts.query else ""
        return Call(service, f"{entry['method']} {parts.path}{query}")
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode()
    action = parse_qs(body).get("Action", ["?"])[0]
    return Call(service, action)


@contextlib.contextmanager
def moto_server(tmp_path: Path) -> Iterator[MotoServer]:
    recording = tmp_path / "moto-recording.jsonl"
    env = {
        "PATH": "/usr/bin:/bin",
        "MOTO_ENABLE_RECORDING": "1",
        "MOTO_RECORDER_FILEPATH": str(recording),
    }
    server = Path(sys.executable).parent / "moto_server"
    with subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        lines: queue.Queue[str] = queue.Queue()

        def drain() -> None:  # werkzeug logs every request to stderr: keep the pipe empty
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.put(line)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            url = None
            while url is None:
                line = lines.get(timeout=30)  # raises queue.Empty if moto never comes up
                found = _LISTENING.search(line)
                url = found.group(1) if found else None
            yield MotoServer(url=url, recording=recording)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            reader.join(timeout=10)
