"""The signing keys of each trusted CI issuer: discovery, then JWKS, fetched over https and cached.

Fetched as ``doctor`` fetches (broker/net): a deadline for each document, a size cap, only
addresses the issuer may use (loopback only for a loopback issuer), no redirects. Cached per
issuer for ``max_age``; an unknown ``kid`` (the provider rotated) triggers a refresh, but at most
one fetch per issuer per ``min_interval``, so junk kids cannot make the broker hammer GitHub.
A failed refresh keeps the keys already held.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from joserfc.jwk import ECKey, RSAKey

from broker.callers.exchange import Key
from broker.config.trusted_issuers import TrustedIssuer
from broker.errors import InvalidGrant, IssuerUnavailable
from broker.net.bounded_fetch import MAX_DOCUMENT_BYTES, FetchFailed, get_json, verify_context
from broker.net.fetch_guard import Guard
from broker.sts.oidc import DISCOVERY_PATH

log = logging.getLogger("broker.exchange")
FETCH_SECONDS = 5.0
MAX_JWKS_KEYS = 100
MIN_RSA_BITS = 2048
ALG_OF_KTY = {"RSA": "RS256", "EC": "ES256"}  # the one algorithm each key type may verify here
_HEADERS = {"accept": "application/json", "user-agent": "test-broker-exchange"}

Fetch = Callable[[TrustedIssuer], dict[str, Key]]


def fetch_keys(table: TrustedIssuer) -> dict[str, Key]:
    """The issuer's usable public signing keys by kid; FetchFailed says why there are none."""
    issuer = table.issuer_url
    try:
        verify = verify_context(table.ca_file)
    except (ssl.SSLError, OSError) as exc:  # checked at load; the file may change since
        raise FetchFailed(f"ca_file {table.ca_file} is unusable: {exc}") from None
    options: dict[str, Any] = {
        "guard": Guard.for_issuer(issuer),
        "verify": verify,
        "seconds": FETCH_SECONDS,
        "cap": MAX_DOCUMENT_BYTES,
        "headers": _HEADERS,
    }
    discovery = get_json(issuer + DISCOVERY_PATH, **options)
    if discovery.get("issuer") != issuer:
        raise FetchFailed(
            f"{issuer}{DISCOVERY_PATH} names issuer {str(discovery.get('issuer'))[:120]!r}, "
            "not itself"
        )
    jwks_uri = discovery.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise FetchFailed(f"{issuer}{DISCOVERY_PATH} has no jwks_uri")
    jwks = get_json(jwks_uri, **options)
    members = jwks.get("keys")
    if not isinstance(members, list):
        raise FetchFailed(f"{jwks_uri} has no 'keys' list")
    keys: dict[str, Key] = {}
    for member in members[:MAX_JWKS_KEYS]:
        found = _public_key(member)
        if found is not None:
            keys[found[0]] = found[1]
    return keys


def _public_key(member: Any) -> tuple[str, Key] | None:
    """A signing key as (kid, key), or None for anything this broker would not verify with."""
    if not isinstance(member, dict) or member.get("use", "sig") != "sig":
        return None
    kid = member.get("kid")
    kty = member.get("kty")
    if not isinstance(kid, str) or kty not in ("RSA", "EC"):
        return None
    if member.get("alg", ALG_OF_KTY[kty]) != ALG_OF_KTY[kty]:  # e.g. RS512: never accepted here
        return None
    if (
        kty == "EC" and member.get("crv") != "P-256"
    ):  # before joserfc, which raises KeyError on others
        return None
    public = {k: v for k, v in member.items() if k in ("kty", "kid", "n", "e", "crv", "x", "y")}
    try:
        key: Key = RSAKey.import_key(public) if kty == "RSA" else ECKey.import_key(public)
    except Exception:  # noqa: BLE001 - one odd member of someone else's JWKS must not sink the rest
        return None
    if isinstance(key, RSAKey) and key.raw_value.key_size < MIN_RSA_BITS:
        return None
    return kid, key


@dataclass
class _Held:
    keys: dict[str, Key] = field(default_factory=dict)
    fetched_at: float | None = None  # last successful fetch (monotonic)
    tried_at: float | None = None  # last attempt, successful or not
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class IssuerKeys:
    def __init__(
        self,
        fetch: Fetch = fetch_keys,
        *,
        min_interval: float = 60.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._min_interval = min_interval
        self._max_age = max_age
        self._clock = clock
        self._held: dict[str, _Held] = {}

    async def key(self, table: TrustedIssuer, kid: str) -> Key:
        held = self._held.setdefault(table.issuer_url, _Held())
        if kid in held.keys and not self._stale(held):
            return held.keys[kid]
        async with held.lock:  # one fetch per issuer at a time; waiters then see its result
            if (kid not in held.keys or self._stale(held)) and self._may_try(held):
                await self._refresh(table, held)
        if kid in held.keys:
            return held.keys[kid]
        if held.fetched_at is None:
            raise IssuerUnavailable(
                f"the keys of {table.issuer_url} could not be fetched yet; retry in a minute"
            )
        raise InvalidGrant(
            f"key {kid[:64]!r} is not published by {table.issuer_url}; the token is not its own"
        )

    def _stale(self, held: _Held) -> bool:
        return held.fetched_at is None or self._clock() - held.fetched_at >= self._max_age

    def _may_try(self, held: _Held) -> bool:
        return held.tried_at is None or self._clock() - held.tried_at >= self._min_interval

    async def _refresh(self, table: TrustedIssuer, held: _Held) -> None:
        held.tried_at = self._clock()
        try:
            keys = await asyncio.to_thread(self._fetch, table)
        except Exception as exc:
            if not isinstance(exc, FetchFailed):
                log.exception("keys of trusted issuer %s: unexpected failure", table.issuer_url)
            log.warning("keys of trusted issuer %s: %s", table.issuer_url, exc)
            if held.fetched_at is None:
                raise IssuerUnavailable(
                    f"the keys of {table.issuer_url} could not be fetched ({exc}); retry later"
                ) from None
            return  # keep the keys already held
        held.keys = keys
        held.fetched_at = self._clock()
        log.info("keys of trusted issuer %s: %s", table.issuer_url, sorted(keys))
