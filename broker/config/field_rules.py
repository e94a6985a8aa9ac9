"""Rules for single settings, as annotated types the settings model uses.

Each rule's message says what is wrong and what would do (it reaches people as one line).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from broker.sts.issuer_rules import issuer_problem
from broker.sts.tags import MAX_TAG_KEY, TAG_PUNCTUATION, plain_tag_key_ok

# A path nginx reads as one unquoted token: no spaces, quotes, ';', braces or '$' variables.
NGINX_SAFE_PATH = re.compile(r"[A-Za-z0-9._/@+=:-]+")
# A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d, so this block is every IPv4 client.
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _trusts_everyone(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if network.prefixlen == 0:
        return True
    return isinstance(network, ipaddress.IPv6Network) and network.supernet_of(_IPV4_MAPPED)


def _issuer_shape(value: str) -> str:
    problem = issuer_problem(value)
    if problem:
        raise ValueError(f"issuer {value!r} {problem}")
    return value


def _tag_key_shape(value: str) -> str:
    if not plain_tag_key_ok(value):
        raise ValueError(
            f"{value!r} is not a usable STS tag key: 1-{MAX_TAG_KEY} of A-Z a-z 0-9 "
            f"{' '.join(TAG_PUNCTUATION)}, not starting with 'aws:'"
        )
    return value


def _proxy_networks(value: list[str]) -> list[str]:
    for item in value:
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            # "*" too: trusting every peer would let any client pick its rate-limit address.
            raise ValueError(f"{item!r} is not an IP address or network") from None
        if _trusts_everyone(network):
            raise ValueError(
                f"{item!r} covers every address: any client could then name its own address "
                "(rate limits, audit) in X-Forwarded-For; list only your proxies, "
                'e.g. ["127.0.0.1"]'
            )
    return value


def _nginx_safe_path(value: Path | None) -> Path | None:
    # The path is written into the nginx site (`test-broker render nginx`) as one token.
    if value is not None and not (value.is_absolute() and NGINX_SAFE_PATH.fullmatch(str(value))):
        raise ValueError(
            f"{str(value)!r} must be an absolute path of letters, digits and . _ - / @ + = : "
            "(it is written into the nginx site)"
        )
    return value


def _sub_has_scope(value: str) -> str:
    if value.count("{scope}") != 1 or value.replace("{scope}", "").count("{") != 0:
        raise ValueError("must contain '{scope}' exactly once and no other '{...}' field")
    return value


IssuerUrl = Annotated[str, AfterValidator(_issuer_shape)]
TagKey = Annotated[str, AfterValidator(_tag_key_shape)]
ProxyNetworks = Annotated[list[str], AfterValidator(_proxy_networks)]
NginxPath = Annotated[Path | None, AfterValidator(_nginx_safe_path)]
SubTemplate = Annotated[str, AfterValidator(_sub_has_scope)]
