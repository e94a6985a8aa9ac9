"""One route table feeds the app and /openapi.json: on every combination of enabled caller kinds,
what is documented answers, what is mounted is documented, and the rest is an unknown route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from broker.config import Settings, load_settings
from broker.server import routes
from broker.server.app import WellKnownFront, _Observed
from broker.testing.live import LiveBroker, serving
from tests.server.caller_kinds import ALWAYS, COMBINATIONS, MINT, SESSION, Combination

UNKNOWN = "/v1/does-not-exist"
PROOF = {"auth_token": "federation-proof"}
Operation = tuple[str, str]  # (path, METHOD)


@pytest.fixture(scope="module", params=COMBINATIONS)
def combination(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveBroker, frozenset[str]]]:
    combo: Combination = request.param
    data = tmp_path_factory.mktemp("data")

    def make(url: str) -> Settings:
        return load_settings(environ={}, oidc_issuer=url, data_dir=data, **combo.overrides)

    with serving(make) as broker:
        yield broker, combo.minting_paths


def mounted_operations(app: WellKnownFront) -> set[Operation]:
    """What the app answers, read from its layers: the well-known front, Starlette's routes and
    the direct endpoints. HEAD goes with GET (HTTP defines it as GET without the body)."""
    operations = {(path, "GET") for path in app.documents}
    observed = app.inner
    assert isinstance(observed, _Observed)
    starlette = observed.inner
    assert isinstance(starlette, Starlette)
    in_starlette: set[Operation] = set()
    for route in starlette.routes:
        assert isinstance(route, Route)
        methods = route.methods or set()
        in_starlette |= {(route.path, m) for m in methods if m != "HEAD" or "GET" not in methods}
    # A direct endpoint is mounted in Starlette too, so its other methods get 405 with Allow.
    assert set(observed.direct) <= in_starlette
    return operations | in_starlette | set(observed.direct)


def documented_operations(document: dict[str, Any]) -> set[Operation]:
    return {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}


def comparable(resp: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    return resp.status_code, resp.content, sorted(resp.headers.multi_items())


def test_every_mounted_route_is_documented_and_nothing_else(
    combination: tuple[LiveBroker, frozenset[str]],
) -> None:
    broker, _ = combination
    document = broker.client.get("/openapi.json").json()
    assert mounted_operations(broker.app) == documented_operations(document)


def test_every_documented_route_answers_with_a_documented_status(
    combination: tuple[LiveBroker, frozenset[str]],
) -> None:
    broker, _ = combination
    document = broker.client.get("/openapi.json").json()
    for path, method in sorted(documented_operations(document)):
        resp = broker.client.request(method, path)  # no bearer, no body: refused, not unknown
        assert resp.status_code != 404, (method, path)
        assert str(resp.status_code) in document["paths"][path][method.lower()]["responses"], (
            method,
            path,
            resp.status_code,
        )


def test_routes_of_disabled_kinds_answer_exactly_like_an_unknown_route(
    combination: tuple[LiveBroker, frozenset[str]],
) -> None:
    broker, minting_paths = combination
    for path in {SESSION, MINT} - minting_paths:
        for method in ("POST", "GET"):
            real = broker.client.request(method, path, json=PROOF)
            unknown = broker.client.request(method, UNKNOWN, json=PROOF)
            assert real.status_code == 404
            assert comparable(real) == comparable(unknown)


def test_each_combination_mounts_the_minting_routes_it_enables(
    combination: tuple[LiveBroker, frozenset[str]],
) -> None:
    broker, minting_paths = combination
    paths = {path for path, _ in mounted_operations(broker.app)}
    assert minting_paths | ALWAYS == paths
    # The mint route stays on the direct path past Starlette's router (app._Observed says why).
    observed = broker.app.inner
    assert isinstance(observed, _Observed)
    assert set(observed.direct) == ({(MINT, "POST")} if MINT in minting_paths else set())


@pytest.mark.parametrize("combo", COMBINATIONS)
def test_the_table_selects_by_enabled_caller_kinds(
    make_settings: Callable[..., Settings], combo: Combination
) -> None:
    settings = make_settings(**combo.overrides)
    expected_kinds = {routes.FEDERATION_PROOF} if combo.federation_proof else set()
    expected_kinds |= {routes.CREDENTIALS} if combo.credential_minting else set()
    assert expected_kinds == routes.enabled_kinds(settings)
    assert combo.minting_paths | ALWAYS == {r.path for r in routes.mounted(settings)}


def test_endpoint_names_are_unique_and_paths_are_not_repeated() -> None:
    names = [r.endpoint for r in routes.ROUTES]
    operations = [(r.path, m) for r in routes.ROUTES for m in r.methods]
    assert len(names) == len(set(names))
    assert len(operations) == len(set(operations))
