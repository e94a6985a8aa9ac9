"""Bad input gets a 4xx with a stable code and a sentence, never a 5xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.types import Message

from broker.config import Settings
from broker.server.app import create_app
from broker.testing.live import LiveBroker, StartBroker

MINT = "/v1/mint-oidc-jwt"
SESSION = "/session/create"


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker(max_body_bytes=1024)


@pytest.fixture
def auth(broker: LiveBroker) -> dict[str, str]:
    bearer = broker.client.post(SESSION, json={"auth_token": "p"}).json()["session"]
    return {"Authorization": f"Bearer {bearer}"}


def assert_error(resp, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == code
    assert len(body["message"]) > 10


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b"{", JSON, 400, "invalid_json"),
        (b"[1, 2]", JSON, 400, "invalid_request"),
        (b'{"auth_token": 5}', JSON, 400, "invalid_request"),
        (b'{"auth_token": "x", "extra": 1}', JSON, 400, "invalid_request"),
        (b"", JSON, 400, "invalid_request"),
        (b'{"auth_token": "x"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"auth_token": "x"}', {}, 415, "unsupported_media_type"),
        (b"[" * 1000, JSON, 400, "invalid_json"),
        (b"\xff\xfe", JSON, 400, "invalid_json"),
    ],
    ids=[
        "truncated-json",
        "not-an-object",
        "wrong-type",
        "unknown-field",
        "empty-body",
        "text-plain",
        "no-content-type",
        "deep-nesting",
        "not-utf8",
    ],
)
def test_session_create_bad_bodies(
    broker: LiveBroker, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    assert_error(broker.client.post(SESSION, content=content, headers=headers), status, code)


def test_unknown_mint_field_names_the_allowed_ones(
    broker: LiveBroker, auth: dict[str, str]
) -> None:
    resp = broker.client.post(MINT, headers=auth, json={"scopes": "x"})
    assert_error(resp, 400, "invalid_request")
    assert "'scopes'" in resp.json()["message"]
    assert "ttl_seconds" in resp.json()["message"]


@pytest.mark.parametrize("content", [b"\n", b" \r\n\t"], ids=["newline", "whitespace"])
def test_a_blank_mint_body_sent_as_json_is_invalid_json_not_an_absent_body(
    broker: LiveBroker, auth: dict[str, str], content: bytes
) -> None:
    # schemathesis sent "\n" as application/json and got a token: the body is optional, not this.
    resp = broker.client.post(MINT, content=content, headers={**auth, **JSON})
    assert_error(resp, 400, "invalid_json")


def test_an_absent_mint_body_still_mints(broker: LiveBroker, auth: dict[str, str]) -> None:
    assert broker.client.post(MINT, headers=auth).status_code == 200


@pytest.mark.parametrize("ttl", ["300", 1.5, True, None])
def test_mint_ttl_must_be_an_integer(broker: LiveBroker, auth: dict[str, str], ttl: object) -> None:
    resp = broker.client.post(MINT, headers=auth, json={"ttl_seconds": ttl})
    if ttl is None:  # explicit null means "default"
        assert resp.status_code == 200
    else:
        assert_error(resp, 400, "invalid_request")


def test_oversized_body_is_413_by_declared_length(broker: LiveBroker) -> None:
    resp = broker.client.post(SESSION, json={"auth_token": "x" * 2000})
    assert_error(resp, 413, "body_too_large")


def test_oversized_chunked_body_is_413(broker: LiveBroker) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"auth_token": "'
        for _ in range(40):
            yield b"x" * 100
        yield b'"}'

    resp = broker.client.post(SESSION, content=chunks(), headers=JSON)
    assert "content-length" not in resp.request.headers
    assert_error(resp, 413, "body_too_large")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer a b",
        "Bearer " + "a" * 2000,
        "Bearer not*base64",
        "Bearer fps_AAAA",
    ],
    ids=[
        "absent",
        "empty",
        "scheme-only",
        "basic",
        "two-tokens",
        "huge",
        "bad-charset",
        "short-session",
    ],
)
def test_bad_authorization_headers_get_one_identical_401(
    broker: LiveBroker, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    resp = broker.client.post(MINT, headers=headers)
    assert_error(resp, 401, "unauthorized")
    reference = broker.client.post(MINT, headers={"Authorization": "Bearer fps_unknown"})
    assert resp.content == reference.content
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", SESSION), ("PUT", MINT), ("DELETE", "/healthz"), ("POST", "/readyz")],
)
def test_wrong_methods_get_405(broker: LiveBroker, method: str, path: str) -> None:
    resp = broker.client.request(method, path)
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["allow"]


def test_unknown_route_is_404_json(broker: LiveBroker) -> None:
    assert_error(broker.client.get("/nope"), 404, "not_found")


# -- inputs uvicorn's parser never lets through, but a proxy or another server might ---------------


def _asgi(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], messages: list[Message]
) -> list[Message]:
    """Call the app directly: receive() hands out ``messages`` in order."""
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(app(scope, receive, send))
    return sent


def _error(sent: list[Message]) -> tuple[int, str]:
    return sent[0]["status"], json.loads(sent[1]["body"])["error"]


@pytest.mark.parametrize("length", ["²", "1" * 5000, "-1", " 5"])
def test_a_strange_content_length_is_400(
    make_settings: Callable[..., Settings], length: str
) -> None:
    app = create_app(make_settings())
    body = {"type": "http.request", "body": b"{}", "more_body": False}
    headers = [(b"content-type", b"application/json"), (b"content-length", length.encode())]
    sent = _asgi(app, SESSION, headers, [body])
    assert _error(sent) == (400, "invalid_request")


@pytest.mark.parametrize("path", [SESSION, MINT])
def test_a_client_gone_mid_body_is_a_refusal_not_a_traceback(
    make_settings: Callable[..., Settings], path: str
) -> None:
    app = create_app(make_settings())
    whole = {"type": "http.request", "body": b'{"auth_token": "p"}', "more_body": False}
    json_type = (b"content-type", b"application/json")
    session = json.loads(_asgi(app, SESSION, [json_type], [whole])[1]["body"])["session"]
    headers = [
        json_type,
        (b"content-length", b"40"),
        (b"authorization", b"Bearer " + session.encode()),
    ]
    part = {"type": "http.request", "body": b'{"auth_token": ', "more_body": True}
    sent = _asgi(app, path, headers, [part, {"type": "http.disconnect"}])
    assert _error(sent) == (400, "client_disconnected")
