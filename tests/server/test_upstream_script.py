"""The upstream curl + jq proof sequence runs unchanged against the broker."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import jwt as pyjwt
import pytest

from broker.testing.live import StartBroker

SCRIPT = Path(__file__).parent / "scripts" / "upstream_proof.sh"

pytestmark = pytest.mark.integration


def run_upstream_proof(broker_url: str, **env: str) -> dict[str, str]:
    """Run the script exactly as upstream does; its SESSION/WALLET/JWT lines as a dict."""
    run = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "BROKER": broker_url, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return dict(line.split("=", 1) for line in run.stdout.splitlines())


def test_upstream_proof_sequence(live_broker: StartBroker) -> None:
    broker = live_broker()
    out = run_upstream_proof(broker.url)
    assert re.fullmatch(r"0x[0-9a-f]{40}", out["WALLET"])
    # The wallet jq decoded is the one the session belongs to, and the token's tag carries it.
    claims = pyjwt.decode(out["JWT"], options={"verify_signature": False})
    assert claims["https://aws.amazon.com/tags"]["principal_tags"]["agentkeys_user_wallet"] == [
        out["WALLET"]
    ]
    again = broker.client.post("/session/create", json={"auth_token": "federation-proof"})
    assert again.json()["wallet"] == out["WALLET"]
