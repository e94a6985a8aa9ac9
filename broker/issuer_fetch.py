"""Fetching an issuer's discovery document and JWKS the way AWS STS does.

https only (loopback http for local test issuers), no redirects, a 5 s budget per fetch, JSON
objects only; every way it can fail is a finding with the answer STS would give.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.config import is_loopback_host
from broker.discovery import DISCOVERY_PATH
from broker.sts_catalogue import RETRIEVE_KEY, Finding, reject, show, warn
from broker.sts_rules_issuer import check_discovery, check_issuer_url, split_url

if TYPE_CHECKING:
    import ssl
    from urllib.parse import SplitResult

    import httpx

FETCH_BUDGET = 5.0  # seconds STS allows for each fetch
SLOW_SHARE = 0.2  # warn when a fetch takes more than this share of the budget


@dataclass(frozen=True, kw_only=True)
class IssuerDocs:
    """What fetching an issuer produced: the documents STS would use (None if it cannot)."""

    discovery: dict[str, Any] | None
    jwks: dict[str, Any] | None
    findings: list[Finding]
    info: dict[str, Any]


def _fetchable(parts: SplitResult) -> bool:
    # Loopback http is the dev default; STS itself fetches https only.
    return parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )


def _fetch(
    client: httpx.Client, url: str, what: str, budget: float, out: list[Finding]
) -> tuple[dict[str, Any] | None, float]:
    import httpx

    rule = f"fetch.{what}"

    def fail(detail: str, fix: str) -> tuple[None, float]:
        out.append(reject(rule, detail, fix, RETRIEVE_KEY, "InvalidIdentityToken"))
        return None, elapsed

    elapsed = 0.0
    parts = split_url(url)  # urlsplit raises on e.g. an unclosed IPv6 bracket
    if parts is None:
        return fail(f"{what} URL {url!r} is not a valid URL", "Publish a well-formed https URL.")
    if not _fetchable(parts):
        return fail(f"{what} URL {url!r} is not https", "Serve it over https on a public host.")
    started = time.perf_counter()
    try:
        response = client.get(url)
    except httpx.TimeoutException:
        elapsed = time.perf_counter() - started
        return fail(f"{url} gave no answer within {budget:g} s", "Answer STS in well under 5 s.")
    except httpx.HTTPError as exc:
        elapsed = time.perf_counter() - started
        return fail(f"{url} failed: {exc}", "Serve it on a reachable host with a valid chain.")
    except httpx.InvalidURL as exc:  # not an HTTPError: e.g. a NUL byte, or over 64k characters
        return fail(f"{what} URL {show(url)} cannot be requested: {exc}", "Publish a valid URL.")
    elapsed = round(time.perf_counter() - started, 3)
    if response.is_redirect:
        where = response.headers.get("location", "?")
        detail = f"{url} redirects ({response.status_code}) to {where}: STS follows no redirects"
        return fail(detail, "Serve the document at this exact URL.")
    if response.status_code != 200:
        return fail(f"{url} answered {response.status_code}", "Serve it publicly, without auth.")
    if elapsed > budget:
        return fail(f"{url} took {elapsed:.2f} s, over {budget:g} s", "Answer in well under 5 s.")
    if elapsed > budget * SLOW_SHARE:
        detail = f"{url} took {elapsed:.2f} s (STS gives up at {budget:g} s)"
        out.append(warn("fetch.time", detail, "Serve the documents from precomputed bytes."))
    try:
        doc = response.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deep for json
        doc = None
    if not isinstance(doc, dict):
        return fail(f"{url} did not answer a JSON object", "Serve the document as JSON.")
    return doc, elapsed


def fetch_issuer(
    issuer: str, *, verify: ssl.SSLContext | bool = True, budget: float = FETCH_BUDGET
) -> IssuerDocs:
    """Fetch ``<issuer>/.well-known/openid-configuration`` then ``jwks_uri`` the way STS does."""
    import httpx

    out: list[Finding] = []
    info: dict[str, Any] = {}
    jwks: dict[str, Any] | None = None
    headers = {"accept": "application/json", "user-agent": "test-broker-doctor"}
    with httpx.Client(verify=verify, timeout=budget, follow_redirects=False, headers=headers) as c:
        discovery, info["discovery_seconds"] = _fetch(
            c, issuer + DISCOVERY_PATH, "discovery", budget, out
        )
        if discovery is None:
            out += check_issuer_url(issuer)
        else:
            out += check_discovery(discovery, issuer=issuer)
            jwks_uri = discovery.get("jwks_uri")
            if isinstance(jwks_uri, str):  # otherwise discovery.jwks_uri has said why
                jwks, info["jwks_seconds"] = _fetch(c, jwks_uri, "jwks", budget, out)
    return IssuerDocs(discovery=discovery, jwks=jwks, findings=out, info=info)


def tls_targets(issuer: str, discovery: Mapping[str, Any] | None) -> list[tuple[str, int]]:
    """The distinct https endpoints STS connects to: the issuer's, then the JWKS host's."""
    urls = [issuer, (discovery or {}).get("jwks_uri")]
    targets: list[tuple[str, int]] = []
    for url in urls:
        parts = split_url(url)  # None for a non-string or unparsable URL: already a finding
        if parts is None or parts.scheme != "https" or not parts.hostname:
            continue
        try:
            target = (parts.hostname, parts.port or 443)
        except ValueError:  # a port out of range: discovery.issuer_url says so
            continue
        if target not in targets:
            targets.append(target)
    return targets


def verify_context(ca_file: Path | None) -> ssl.SSLContext | bool:
    """What to trust when fetching: public CAs, as STS does, plus ``--ca-file`` if given."""
    if ca_file is None:
        return True
    import ssl

    ctx = ssl.create_default_context()  # public CAs, as STS uses, plus the given ones
    ctx.load_verify_locations(cafile=str(ca_file))
    return ctx
