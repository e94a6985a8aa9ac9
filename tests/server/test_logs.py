"""Logs are JSON lines with a request id, and no line ever holds a secret, a token or key material."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from broker.callers import credentials
from broker.callers.federation import FederationProof
from broker.main import main
from broker.server.logs import redact
from broker.store import open_store
from broker.testing.live import free_loopback_url, spawn_broker


@pytest.mark.integration
def test_a_full_session_logs_json_and_no_secret(tmp_path: Path) -> None:
    url = free_loopback_url()
    env = {
        **os.environ,
        "BROKER_OIDC_ISSUER": url,
        "BROKER_DATA_DIR": str(tmp_path),
        "BROKER_CREDENTIAL_MINTING": "true",
        "BROKER_LOG_LEVEL": "debug",
    }
    added = CliRunner().invoke(
        main, ["credentials", "add", "--kind", "ci", "--name", "logs", "--json"], env=env
    )
    secret = json.loads(added.output)["secret"]
    proc = spawn_broker(env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[str] = [secret]
    try:
        with httpx.Client(base_url=url) as c:
            session = c.post("/session/create", json={"auth_token": "p"}).json()["session"]
            seen.append(session)
            for bearer, body in ((session, None), (secret, {"scope": "ci/logs/run-1"})):
                resp = c.post(
                    "/v1/mint-oidc-jwt", json=body, headers={"Authorization": f"Bearer {bearer}"}
                )
                seen.append(resp.json()["jwt"])
            c.post("/v1/mint-oidc-jwt", headers={"Authorization": f"Bearer {secret}x"})
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "the broker logged nothing"
    mints = [line for line in lines if line["msg"].startswith("mint ok")]
    assert len(mints) == 2
    assert all(len(line["request_id"]) == 16 for line in mints)
    keys = [p.read_text() for p in (tmp_path / "keys").glob("*.pem")]
    for needle in [*seen, *keys, "PRIVATE KEY"]:
        assert needle not in stderr


def test_redaction_covers_bearers_tokens_and_pem() -> None:
    text = "a otb_ci_abc_def b fps_xyz c eyJa.eyJb.sig d -----BEGIN EC PRIVATE KEY-----\nx\n-----END EC PRIVATE KEY-----"
    assert redact(text) == "a [redacted] b [redacted] c [redacted] d [redacted]"


def test_redaction_covers_the_bearers_the_broker_really_issues(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    issued = [
        credentials.add(
            store,
            kind=kind,
            name="logs",
            max_ttl=300,
            now=1000,
        )[1]
        for kind in credentials.CREDENTIAL_KINDS
    ]
    store.close()
    issued.append(FederationProof(b"k" * 32, session_ttl=60).create_session("p", now=1).bearer)
    for bearer in issued:
        assert redact(f'auth "Bearer {bearer}", then') == 'auth "Bearer [redacted]", then'
