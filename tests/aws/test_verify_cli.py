"""`test-broker verify` refuses bad input in one line before any network call, never a traceback."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from broker.main import main

ROLE = "arn:aws:iam::123456789012:role/oidc-test-role"
BUCKET = "oidc-test-bucket"
# Nothing listens here: a step that got this far would fail, not pass.
DEAD = "http://127.0.0.1:9"


def verify(*args: str) -> Result:
    argv = ["verify", "--sts-endpoint-url", DEAD, "--s3-endpoint-url", DEAD, *args]
    return CliRunner().invoke(main, argv)


def one_line_error(result: Result, code: int) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--bucket", "prod-data", "--role-arn", ROLE], "'prod-data'"),
        (["--bucket", BUCKET, "--role-arn", "arn:aws:iam::1:role/prod-role"], "'prod-role'"),
        (["--bucket", "prod-data", "--role-arn", "arn:aws:iam::1:role/prod-role"], "--role-arn"),
    ],
    ids=["bucket", "role", "both"],
)
def test_overrides_without_the_test_marker_are_refused(args: list[str], named: str) -> None:
    # The broker URL is dead: had verify gone on, the token step would fail with exit 1.
    line = one_line_error(verify("--broker-url", DEAD, *args), 2)
    assert named in line
    assert "test_marker 'oidc-test'" in line


def test_the_marker_follows_the_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('test_marker = "sandbox"\n')
    args = ["--config", str(config), "--broker-url", DEAD, "--bucket", BUCKET, "--role-arn", ROLE]
    assert "test_marker 'sandbox'" in one_line_error(verify(*args), 2)


@pytest.fixture
def garbage_file(tmp_path: Path) -> Path:
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    return path


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--region", "bad region", "--region 'bad region'"),
        ("--broker-url", "http://[::1", "--broker-url 'http://[::1' is not a URL"),
        ("--broker-url", "ftp://example.com", "must be an http(s) URL"),
        ("--ca-bundle", "GARBAGE", "is not a PEM CA certificate"),
        ("--token-file", "GARBAGE", "--token-file"),
        ("--bearer-file", "GARBAGE", "--bearer-file"),
    ],
)
def test_bad_usage_is_one_line_exit_2(
    garbage_file: Path, option: str, value: str, words: str
) -> None:
    value = str(garbage_file) if value == "GARBAGE" else value
    args = ["--broker-url", DEAD, "--bucket", BUCKET, "--role-arn", ROLE, option, value]
    assert words in one_line_error(verify(*args), 2)


Reply = tuple[str, bytes]


@pytest.fixture
def fake_broker() -> Iterator[Callable[[dict[str, Reply]], str]]:
    """A real HTTP server on loopback answering each path with a fixed 200 body."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(replies: dict[str, Reply]) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind, body = replies.get(self.path, ("text/html", b"<html>404</html>"))
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


HTML: Reply = ("text/html", b"<html><body>Welcome to nginx!</body></html>")


def _json(body: object) -> Reply:
    return ("application/json", json.dumps(body).encode())


@pytest.mark.parametrize(
    ("replies", "words"),
    [
        ({"/session/create": HTML}, "answered 200 but not JSON: <html><body>Welcome to nginx!"),
        ({"/session/create": _json({"wallet": "0xabc"})}, "without a 'session' string"),
        (
            {"/session/create": _json({"session": "s"}), "/v1/mint-oidc-jwt": _json({"x": 1})},
            "without a 'jwt' string",
        ),
        ({"/session/create": _json(["session"])}, "without a 'session' string"),
    ],
    ids=["html", "no-session", "no-jwt", "json-list"],
)
def test_a_broker_answering_garbage_is_a_failed_token_step(
    fake_broker: Callable[[dict[str, Reply]], str], replies: dict[str, Reply], words: str
) -> None:
    url = fake_broker(replies)
    result = verify("--json", "--broker-url", url, "--bucket", BUCKET, "--role-arn", ROLE)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["isolated"] is False
    assert [(s["name"], s["outcome"]) for s in report["steps"]] == [("token", "error")]
    assert words in report["steps"][0]["detail"]
    assert report["diagnosis"][0].startswith("no token: VerifyFailed: ")
