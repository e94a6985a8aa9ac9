"""schemathesis against a live broker: no 5xx, and every response as /openapi.json describes it,
on every combination of enabled caller kinds (the inert one too).

Each combination's schema is built by the same function the broker serves /openapi.json from (a
test below pins that the served document is that one, byte for byte, and the fuzzed one but for
the server URL); calls go to a real uvicorn server of that combination.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.schemas import BaseSchema
from starlette.responses import JSONResponse

from broker.callers import credentials
from broker.callers.federation import FederationProof, load_secret
from broker.config import Settings, load_settings
from broker.server import openapi
from broker.store import open_store
from broker.store.files import private_dir
from broker.testing.live import LiveBroker, serving
from tests.server.caller_kinds import COMBINATIONS, Combination

# 413 (body above max_body_bytes) is a correct rejection of an over-long field too.
CONFIG = schemathesis.Config.from_str("""
[generation]
mode = "all"

[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 413, 415]
""")
# Examples per operation and combination, as when only one combination was fuzzed; the four
# combinations add about 15 s to the suite (the mint route runs on three, the session route on two).
MAX_EXAMPLES = 60
# The brokers' data dirs, shared with the auth providers below (which may run before fixtures).
DATA = Path(tempfile.gettempdir()) / f"broker-fuzz-{os.getpid()}"
DEFAULT_ISSUER = load_settings(environ={}).oidc_issuer


def fuzz_settings(combo: Combination, name: str, issuer: str = DEFAULT_ISSUER) -> Settings:
    # Rate limits off: schemathesis probes bad auth faster than any client should (tested apart).
    return load_settings(
        environ={}, oidc_issuer=issuer, data_dir=DATA / name, rate_limits=False, **combo.overrides
    )


@pytest.fixture(scope="module")
def fuzzed_brokers() -> Iterator[Callable[[str], LiveBroker]]:
    """A live broker per combination, started on first use and kept for the module."""
    combos = {param.id: param.values[0] for param in COMBINATIONS}
    started: dict[str, LiveBroker] = {}
    with contextlib.ExitStack() as stack:

        def broker(name: str) -> LiveBroker:
            if name not in started:
                make = partial(fuzz_settings, combos[name], name)
                started[name] = stack.enter_context(serving(make))
            return started[name]

        yield broker
    shutil.rmtree(DATA, ignore_errors=True)


def broker_auth(combo: Combination, data: Path) -> type[Any]:
    class BrokerAuth:
        """Real bearers of each enabled kind (a federation session, a personal secret), in
        turn, so schemathesis fuzzes past the 401 on every caller path (and probes the 401)."""

        bearers: list[str] = []  # noqa: RUF012 - one list per combination, filled once

        def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
            # May be called while tests are generated, before the server runs: write its state.
            if not BrokerAuth.bearers:
                BrokerAuth.bearers = real_bearers(combo, data)
            BrokerAuth.bearers.append(BrokerAuth.bearers.pop(0))
            return BrokerAuth.bearers[0]

        def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return BrokerAuth


def real_bearers(combo: Combination, data: Path) -> list[str]:
    now = int(time.time())
    private_dir(data)
    bearers = []
    if combo.federation_proof:
        fed = FederationProof(load_secret(data), session_ttl=3600)
        bearers.append(fed.create_session("fuzz", now).bearer)
    if combo.credential_minting:
        with closing(open_store(data)) as store:
            _, secret = credentials.add(
                store,
                kind="dev",
                name="fuzz",
                max_ttl=3600,
                now=now,
            )
        bearers.append(secret)
    return bearers or ["otb_dev_nobody_0"]  # inert: no route takes a bearer


def fuzzed_schema(combo: Combination, name: str) -> BaseSchema:
    document = openapi.document(fuzz_settings(combo, name))
    schema = schemathesis.openapi.from_dict(document, config=CONFIG)
    schema.auth()(broker_auth(combo, DATA / name))
    return schema


SCHEMAS = {param.id: fuzzed_schema(param.values[0], param.id) for param in COMBINATIONS}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_served_document_is_the_fuzzed_one(
    fuzzed_brokers: Callable[[str], LiveBroker], name: str
) -> None:
    broker = fuzzed_brokers(name)
    served = broker.client.get("/openapi.json")
    assert served.content == JSONResponse(openapi.document(broker.settings)).body
    assert {**served.json(), "servers": [{"url": DEFAULT_ISSUER}]} == SCHEMAS[name].raw_schema


def _conformance_test(name: str) -> Callable[..., None]:
    @SCHEMAS[name].parametrize()
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def test(case: schemathesis.Case, fuzzed_brokers: Callable[[str], LiveBroker]) -> None:
        case.call_and_validate(base_url=fuzzed_brokers(name).url)

    test.__name__ = f"test_api_conforms_{name}"
    return test


test_api_conforms_inert = _conformance_test("inert")
test_api_conforms_federation = _conformance_test("federation")
test_api_conforms_credentials = _conformance_test("credentials")
test_api_conforms_both = _conformance_test("both")
