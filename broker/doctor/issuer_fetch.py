"""Fetching an issuer's discovery document and JWKS the way AWS STS does.

https only (loopback http for local test issuers), no redirects (a 3xx is a finding, never
followed), JSON objects only; every way it can fail is a finding with the answer STS would give.
Each fetch is bounded, because the URLs come from the issuer being examined:

- one deadline for the whole fetch (name resolution, connect, TLS, headers, body), 5 s like
  STS's own short timeout; httpx's timeouts apply per socket operation, so a server dripping a
  byte at a time would outlast them. The transfer runs in a private event loop under
  ``asyncio.timeout``, which cancels it wherever it is.
- at most :data:`MAX_DOCUMENT_BYTES` of body, counted after decompression. httpx decompresses
  each network read whole (64 KiB of gzip can hold 64 MiB), so the raw stream is read and
  gunzipped here with zlib's ``max_length``: memory stays near the cap whatever the ratio. Only
  gzip is offered (``Accept-Encoding``); another encoding is a finding.
- only addresses STS could reach (:mod:`broker.net.fetch_guard`): the host is resolved and vetted
  first, then httpx connects to the vetted IP while the name stays in the Host header, SNI and
  certificate check (httpx's ``sni_hostname`` extension). A fresh client per fetch keeps a TLS
  connection verified for one name from being reused for another on the same IP; proxies from the
  environment are ignored (``trust_env=False``): STS connects directly, and a proxy would resolve
  the name again behind the guard's back.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.net.bounded_fetch import MAX_DOCUMENT_BYTES, Unusable, download, host_of
from broker.net.fetch_guard import AddressRefused, Guard
from broker.sts.catalogue import RETRIEVE_KEY, Finding, reject, show, warn
from broker.sts.issuer_rules import check_discovery, check_issuer_url, is_loopback_host, split_url
from broker.sts.oidc import DISCOVERY_PATH

if TYPE_CHECKING:
    import ssl
    from urllib.parse import SplitResult


FETCH_BUDGET = 5.0  # seconds STS allows for each fetch
SLOW_SHARE = 0.2  # warn when a fetch takes more than this share of the budget
_HEADERS = {"accept": "application/json", "user-agent": "test-broker-doctor"}


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
    url: str,
    what: str,
    *,
    guard: Guard,
    verify: ssl.SSLContext | bool,
    budget: float,
    out: list[Finding],
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
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:  # e.g. a NUL byte, or over 64k characters
        return fail(f"{what} URL {show(url)} cannot be requested: {exc}", "Publish a valid URL.")
    started = time.perf_counter()
    try:
        port = target.port or (443 if target.scheme == "https" else 80)
        addresses = guard.vet(host_of(target), port, within=budget)
        left = budget - (time.perf_counter() - started)
        answer = asyncio.run(
            download(
                target,
                addresses,
                headers=_HEADERS,
                verify=verify,
                seconds=left,
                cap=MAX_DOCUMENT_BYTES,
            )
        )
    except AddressRefused as exc:
        detail = f"{exc}: STS fetches over the internet and cannot reach it (not contacted)"
        return fail(detail, "Serve the issuer and jwks_uri from a public address.")
    except (TimeoutError, httpx.TimeoutException):
        elapsed = round(time.perf_counter() - started, 3)
        detail = f"{url} gave no answer within {budget:g} s (STS's own timeout is as short)"
        return fail(detail, "Answer STS in well under 5 s.")
    except Unusable as exc:
        elapsed = round(time.perf_counter() - started, 3)
        return fail(f"{url} {exc}", "Serve a small JSON document, at most gzip-encoded.")
    except (httpx.HTTPError, zlib.error, OSError) as exc:  # OSError: the name does not resolve
        elapsed = round(time.perf_counter() - started, 3)
        return fail(f"{url} failed: {exc}", "Serve it on a reachable host with a valid chain.")
    elapsed = round(time.perf_counter() - started, 3)
    if 300 <= answer.status < 400 and answer.location is not None:
        where = answer.location
        detail = f"{url} redirects ({answer.status}) to {where}: STS follows no redirects"
        return fail(detail, "Serve the document at this exact URL.")
    if answer.status != 200 or answer.body is None:
        return fail(f"{url} answered {answer.status}", "Serve it publicly, without auth.")
    if elapsed > budget * SLOW_SHARE:
        detail = f"{url} took {elapsed:.2f} s (STS gives up at {budget:g} s)"
        out.append(warn("fetch.time", detail, "Serve the documents from precomputed bytes."))
    try:
        doc = json.loads(answer.body)
    except (ValueError, RecursionError):  # not JSON (or UTF-8), or nested too deep for json
        doc = None
    if not isinstance(doc, dict):
        return fail(f"{url} did not answer a JSON object", "Serve the document as JSON.")
    return doc, elapsed


def fetch_issuer(
    issuer: str,
    *,
    verify: ssl.SSLContext | bool = True,
    budget: float = FETCH_BUDGET,
    guard: Guard | None = None,
) -> IssuerDocs:
    """Fetch ``<issuer>/.well-known/openid-configuration`` then ``jwks_uri`` the way STS does.

    Both fetches go only where ``guard`` allows (default: :meth:`Guard.for_issuer`).
    """
    guard = guard or Guard.for_issuer(issuer)
    out: list[Finding] = []
    info: dict[str, Any] = {}
    jwks: dict[str, Any] | None = None
    discovery, info["discovery_seconds"] = _fetch(
        issuer + DISCOVERY_PATH, "discovery", guard=guard, verify=verify, budget=budget, out=out
    )
    if discovery is None:
        out += check_issuer_url(issuer)
    else:
        out += check_discovery(discovery, issuer=issuer)
        jwks_uri = discovery.get("jwks_uri")
        if isinstance(jwks_uri, str):  # otherwise discovery.jwks_uri has said why
            jwks, info["jwks_seconds"] = _fetch(
                jwks_uri, "jwks", guard=guard, verify=verify, budget=budget, out=out
            )
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
