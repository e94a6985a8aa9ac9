"""schemathesis against a live broker: no 5xx, and every response as /openapi.json describes it.

The schema is built by the same function the broker serves /openapi.json from (a test below pins
that the served document is that one); calls go to a real uvicorn server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import ClassVar

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from broker.callers import credentials
from broker.callers.federation import FederationProof, load_secret
from broker.config import Settings, load_settings
from broker.server import openapi
from broker.store import open_store
from broker.testing.live import LiveBroker, serving

# 413 (body above max_body_bytes) is a correct rejection of an over-long field too.
CONFIG = schemathesis.Config.from_str("""
[generation]
mode = "all"

[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 413, 415]
""")
# The broker's data dir, shared with the auth provider below (which runs before any fixture).
DATA = Path(tempfile.gettempdir()) / f"broker-fuzz-{os.getpid()}"
# Loopback issuer: federation-proof is on by default; credential minting as the broker below.
schema = schemathesis.openapi.from_dict(
    openapi.document(load_settings(environ={}, credential_minting=True)), config=CONFIG
)


@pytest.fixture(scope="module")
def fuzzed_broker() -> Iterator[LiveBroker]:
    # Rate limits off: schemathesis probes bad auth faster than any client should (tested apart).
    def make(url: str) -> Settings:
        return load_settings(
            environ={}, oidc_issuer=url, data_dir=DATA, rate_limits=False, credential_minting=True
        )

    with serving(make) as broker:
        yield broker
    shutil.rmtree(DATA, ignore_errors=True)


@schema.auth()
class BrokerAuth:
    """Real bearers of both kinds (a federation session, a personal secret), alternating, so
    schemathesis fuzzes past the 401 on every caller path (and probes the 401 itself)."""

    bearers: ClassVar[list[str]] = []

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        # Called while tests are generated, before the server runs: write its state directly.
        if not BrokerAuth.bearers:
            fed = FederationProof(load_secret(DATA), session_ttl=3600)
            with closing(open_store(DATA)) as store:
                _, secret = credentials.add(
                    store,
                    kind="dev",
                    name="fuzz",
                    scope_pattern=None,
                    max_ttl=3600,
                    extra_tags={},
                    expires_at=None,
                    now=int(time.time()),
                )
            BrokerAuth.bearers = [fed.create_session("fuzz", int(time.time())).bearer, secret]
        BrokerAuth.bearers.reverse()
        return BrokerAuth.bearers[0]

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def test_served_document_is_the_fuzzed_one(fuzzed_broker: LiveBroker) -> None:
    served = fuzzed_broker.client.get("/openapi.json").json()
    expected = openapi.document(fuzzed_broker.settings)
    assert served == expected


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case: schemathesis.Case, fuzzed_broker: LiveBroker) -> None:
    case.call_and_validate(base_url=fuzzed_broker.url)
