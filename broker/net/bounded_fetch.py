"""One GET within bounds: a vetted address, one deadline for the whole transfer, a capped body.

Moved from ``broker.doctor.issuer_fetch`` so that the server's token exchange fetches a trusted
issuer's keys with the same limits ``doctor`` uses; the reasons for each bound are there:

- the deadline covers connect, TLS, headers and body (``asyncio.timeout`` cancels the transfer
  wherever it is; httpx's own timeouts are per socket operation, so a drip would outlast them);
- the body is capped after decompression: the raw stream is gunzipped here with zlib's
  ``max_length``, so memory stays near the cap whatever the ratio; only gzip is offered;
- httpx connects to the vetted IP (:mod:`broker.net.fetch_guard`) while the name stays in the
  Host header, SNI and certificate check; no redirects, no proxies from the environment.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.net.fetch_guard import Guard, IPAddress, remaining
from broker.sts.catalogue import show
from broker.sts.issuer_rules import split_url

if TYPE_CHECKING:
    import ssl

    import httpx


# AWS documents no size limit; 100 RSA plus 100 EC keys (its caps), even with x5c chains, stay
# well under this, so a larger discovery document or JWKS is broken or hostile.
MAX_DOCUMENT_BYTES = 1 << 20


class Unusable(Exception):
    """The answer cannot be used (too large, an unoffered encoding); the message says why."""


@dataclass(frozen=True)
class Answer:
    status: int
    location: str | None
    body: bytes | None  # read only for a 200


async def read_capped(response: httpx.Response, cap: int) -> bytes:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in {"identity", "gzip", "x-gzip"}:
        raise Unusable(f"answered Content-Encoding {show(encoding)}, which was not offered")
    gunzip = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16) if encoding != "identity" else None
    body = bytearray()
    async for raw in response.aiter_raw():
        chunk = raw
        while chunk and not (gunzip and gunzip.eof):
            if gunzip is None:
                body += chunk
                chunk = b""
            else:  # never more output than one byte past the cap, whatever the ratio
                body += gunzip.decompress(chunk, cap + 1 - len(body))
                chunk = gunzip.unconsumed_tail
            if len(body) > cap:
                raise Unusable(f"is over {cap} bytes (decoded); reading stopped there")
    return bytes(body)


def host_of(url: httpx.URL) -> str:
    return url.raw_host.decode("ascii")  # IDNA-encoded, as DNS and SNI take it


async def download(
    url: httpx.URL,
    addresses: Sequence[IPAddress],
    *,
    headers: Mapping[str, str],
    verify: ssl.SSLContext | bool,
    seconds: float,
    cap: int,
) -> Answer:
    import httpx

    async with (
        asyncio.timeout(seconds),
        httpx.AsyncClient(
            verify=verify, timeout=seconds, follow_redirects=False, trust_env=False
        ) as client,
    ):
        # Connect to the vetted address; Host, SNI and the certificate check keep the name (for
        # an IP literal these equal what httpx would send anyway).
        sent = {**headers, "accept-encoding": "gzip", "host": url.netloc.decode("ascii")}
        extensions = {"sni_hostname": host_of(url)}
        for i, ip in enumerate(addresses):
            target = url.copy_with(host=str(ip))
            try:
                async with client.stream(
                    "GET", target, headers=sent, extensions=extensions
                ) as response:
                    if response.status_code != 200:
                        location = response.headers.get("location")
                        return Answer(response.status_code, location, None)
                    return Answer(200, None, await read_capped(response, cap))
            except httpx.ConnectError:
                if i == len(addresses) - 1:  # as getaddrinfo users do: try the next address
                    raise
    raise AssertionError("unreachable: vet() returns at least one address")


def verify_context(ca_file: Path | None) -> ssl.SSLContext | bool:
    """What to trust when fetching: public CAs, as STS does, plus ``ca_file`` if given."""
    if ca_file is None:
        return True
    import ssl

    ctx = ssl.create_default_context()  # public CAs, as STS uses, plus the given ones
    ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


class FetchFailed(Exception):
    """A bounded JSON fetch gave nothing usable; the message says why, naming the URL."""


def get_json(
    url: str,
    *,
    guard: Guard,
    verify: ssl.SSLContext | bool,
    seconds: float,
    cap: int,
    headers: Mapping[str, str],
) -> dict[str, Any]:
    """GET ``url`` (https only) within ``seconds`` and ``cap`` bytes; its JSON object."""
    import httpx

    parts = split_url(url)
    if parts is None or parts.scheme != "https":
        raise FetchFailed(f"{url[:200]!r} is not an https URL")
    try:
        target = httpx.URL(url)
        deadline = time.monotonic() + seconds
        port = target.port or 443
        addresses = guard.vet(host_of(target), port, within=seconds)
        answer = asyncio.run(
            download(
                target,
                addresses,
                headers=headers,
                verify=verify,
                seconds=remaining(deadline),
                cap=cap,
            )
        )
    except (TimeoutError, httpx.TimeoutException):
        raise FetchFailed(f"{url} gave no answer within {seconds:g} s") from None
    except (Unusable, httpx.HTTPError, httpx.InvalidURL, zlib.error, OSError) as exc:
        raise FetchFailed(f"{url} failed: {exc}") from None
    if answer.status != 200 or answer.body is None:
        raise FetchFailed(f"{url} answered {answer.status} (redirects are not followed)")
    try:
        doc = json.loads(answer.body)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise FetchFailed(f"{url} did not answer a JSON object")
    return doc
