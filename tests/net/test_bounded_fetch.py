"""get_json: https only, within a size cap, only where the guard allows, JSON objects only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from broker.net.bounded_fetch import FetchFailed, get_json, verify_context
from broker.net.fetch_guard import Guard
from broker.sts.oidc import DISCOVERY_PATH
from broker.testing.ci_issuer import StandInIssuer, stand_in_issuer


@pytest.fixture(scope="module")
def issuer(tls_ca: trustme.CA) -> Iterator[StandInIssuer]:
    with stand_in_issuer(tls_ca) as found:
        yield found


def fetch(
    issuer: StandInIssuer, url: str, *, cap: int = 1 << 20, guard: Guard | None = None
) -> dict[str, Any]:
    return get_json(
        url,
        guard=guard or Guard.for_issuer(issuer.url),
        verify=verify_context(issuer.ca_file),
        seconds=5,
        cap=cap,
        headers={"accept": "application/json"},
    )


def test_a_json_document_is_fetched(issuer: StandInIssuer) -> None:
    assert fetch(issuer, issuer.url + DISCOVERY_PATH)["issuer"] == issuer.url


def test_a_body_over_the_cap_is_refused(issuer: StandInIssuer) -> None:
    with pytest.raises(FetchFailed, match="over 40 bytes"):
        fetch(issuer, issuer.url + DISCOVERY_PATH, cap=40)


def test_only_https(issuer: StandInIssuer) -> None:
    with pytest.raises(FetchFailed, match="not an https URL"):
        fetch(issuer, issuer.url.replace("https", "http") + DISCOVERY_PATH)


def test_loopback_is_refused_for_a_public_issuer(issuer: StandInIssuer) -> None:
    public = Guard.for_issuer("https://token.actions.githubusercontent.com")
    with pytest.raises(FetchFailed, match="loopback"):
        fetch(issuer, issuer.url + DISCOVERY_PATH, guard=public)


def test_a_missing_document_is_its_status(issuer: StandInIssuer) -> None:
    with pytest.raises(FetchFailed, match="answered 404"):
        fetch(issuer, issuer.url + "/nothing")
